use super::{Outcome, Processed, Processor, Task, WebhookProcessor};
use crate::config::WebhookConfig;

/// The default processor: a queue with an `endpoint_url` gets signed HTTP delivery, a queue
/// without one is acknowledge-only (the message completes as soon as it is consumed).
pub struct Builtin {
    webhook: WebhookProcessor,
}

impl Builtin {
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        Ok(Self {
            webhook: WebhookProcessor::new(config)?,
        })
    }
}

#[async_trait::async_trait]
impl Processor for Builtin {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        match &job.config.endpoint_url {
            Some(_) => self.webhook.process(job).await,
            None => Outcome::Completed,
        }
    }

    async fn process_recorded(&self, job: &Task<'_>) -> Processed {
        match &job.config.endpoint_url {
            Some(_) => self.webhook.process_recorded(job).await,
            None => Outcome::Completed.into(),
        }
    }
}
