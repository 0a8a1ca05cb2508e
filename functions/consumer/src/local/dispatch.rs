//! Where the local event source sends a batch: to the handler in this process, or to a
//! function through the Lambda Invoke API (`cargo lambda watch` serves one on port 9000).
//! Either way the invocation lives at most the function's timeout, as in Lambda.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::anyhow;
use shared::{delivery::BatchHandler, local::invoke::Invoker};

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

    /// Invokes the function with `event` as Lambda would a function whose timeout is
    /// `timeout`. Ok when the invocation succeeded, so the batch may be acknowledged; an error
    /// when it failed or was still running at the timeout. Lambda stops a function at its
    /// timeout and the invocation fails; here the in-process handler's future is dropped, and
    /// the Invoke API call is cut (the function under `cargo lambda watch` may run on, but its
    /// answer no longer counts).
    pub async fn dispatch(&self, event: &RmqEvent, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let call = async {
            match self {
                // The handler gets the deadline its invocation would have.
                Dispatcher::InProcess(handler) => handle_event(handler, event, deadline)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from),
                Dispatcher::Invoke(invoker) => invoker.invoke(event).await.map(drop),
            }
        };
        match tokio::time::timeout_at(deadline.into(), call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow!(
                "still running at the function timeout ({timeout:?}): abandoned"
            )),
        }
    }
}
