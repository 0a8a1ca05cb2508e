//! Where the local event source sends a batch: to the handler in this process, or to a
//! function through the Lambda Invoke API (`cargo lambda watch` serves one on port 9000).

use std::sync::Arc;

use shared::{delivery::BatchHandler, lambda_invoke::Invoker};

use crate::rmq::{RmqEvent, handle_event};

#[derive(Clone)]
pub enum Dispatcher {
    InProcess(Arc<BatchHandler>),
    Invoke(Invoker),
}

impl Dispatcher {
    pub fn invoke(endpoint: &str, function: &str) -> anyhow::Result<Self> {
        Ok(Dispatcher::Invoke(Invoker::new(endpoint, function)?))
    }

    /// Ok when the batch was handled and may be acknowledged.
    pub async fn dispatch(&self, event: &RmqEvent) -> anyhow::Result<()> {
        match self {
            Dispatcher::InProcess(handler) => {
                // The deadline a function with the configured timeout would have.
                let timeout = handler.context().config.consumer.function_timeout;
                handle_event(handler, event, std::time::Instant::now() + timeout).await?;
                Ok(())
            }
            Dispatcher::Invoke(invoker) => invoker.invoke(event).await.map(|_| ()),
        }
    }
}
