//! Where the local event source sends a batch: to the handler in this process, or to a
//! function through the Lambda Invoke API (`cargo lambda watch` serves one on port 9000).

use std::sync::Arc;

use aws_lambda_events::event::rabbitmq::RabbitMqEvent;
use shared::{delivery::BatchHandler, lambda_invoke::Invoker};

use crate::rmq::handle_event;

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
    pub async fn dispatch(&self, event: &RabbitMqEvent) -> anyhow::Result<()> {
        match self {
            Dispatcher::InProcess(handler) => {
                handle_event(handler, event).await?;
                Ok(())
            }
            Dispatcher::Invoke(invoker) => invoker.invoke(event).await.map(|_| ()),
        }
    }
}
