//! Where the local event source sends a batch: to the handler in this process, or to a
//! function through the Lambda Invoke API (`cargo lambda watch` serves one on port 9000).

use std::sync::Arc;

use aws_lambda_events::event::rabbitmq::RabbitMqEvent;
use shared::delivery::BatchHandler;

use crate::rmq::handle_event;

#[derive(Clone)]
pub enum Dispatcher {
    InProcess(Arc<BatchHandler>),
    Invoke {
        client: reqwest::Client,
        url: String,
    },
}

impl Dispatcher {
    pub fn invoke(endpoint: &str, function: &str) -> anyhow::Result<Self> {
        Ok(Dispatcher::Invoke {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(900))
                .build()?,
            url: format!(
                "{}/2015-03-31/functions/{function}/invocations",
                endpoint.trim_end_matches('/')
            ),
        })
    }

    /// Ok when the batch was handled and may be acknowledged.
    pub async fn dispatch(&self, event: &RabbitMqEvent) -> anyhow::Result<()> {
        match self {
            Dispatcher::InProcess(handler) => {
                handle_event(handler, event).await?;
                Ok(())
            }
            Dispatcher::Invoke { client, url } => {
                let resp = client.post(url).json(event).send().await?;
                let function_error = resp.headers().get("x-amz-function-error").cloned();
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if !status.is_success() || function_error.is_some() {
                    anyhow::bail!("invocation failed ({status}): {body}");
                }
                Ok(())
            }
        }
    }
}
