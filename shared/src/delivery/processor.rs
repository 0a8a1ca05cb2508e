//! What "process a message" means. Deployers put their business logic here by implementing
//! [`Processor`]; built in are an acknowledge-only processor and a signed HTTP delivery to the
//! queue's `endpoint_url` ([`Builtin`] picks between them per queue).

use std::{collections::BTreeMap, time::Duration};

use crate::domain::{ConsumerConfig, MessageId, TenantId};

/// One message handed to a processor.
#[derive(Debug)]
pub struct Task<'a> {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub queue_name: &'a str,
    /// The message body, JSON.
    pub body: &'a [u8],
    pub headers: &'a BTreeMap<String, String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub config: &'a ConsumerConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// A transient failure: retried after the queue's delay (at least `retry_after`) while the
    /// attempt budget lasts.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// A permanent failure: dead-lettered at once.
    Fail {
        error: String,
    },
}

impl Outcome {
    pub fn retry(error: impl Into<String>) -> Self {
        Outcome::Retry {
            error: error.into(),
            retry_after: None,
        }
    }
}

/// What an HTTP endpoint answered, kept with the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// The first bytes of the body as text, bounded by `ATTEMPT_RESPONSE_EXCERPT_BYTES`.
    pub excerpt: Option<String>,
}

/// An outcome with what the attempt record keeps besides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    pub outcome: Outcome,
    /// The endpoint's answer, for processors that deliver over HTTP and got one (none on a
    /// transport error: timeout, refused connection).
    pub response: Option<HttpResponse>,
}

impl From<Outcome> for Processed {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            response: None,
        }
    }
}

#[async_trait::async_trait]
pub trait Processor: Send + Sync {
    async fn process(&self, job: &Task<'_>) -> Outcome;

    /// The outcome and what the endpoint answered. The consumer calls this; processors that
    /// have an answer worth recording (the webhook) override it, others need not.
    async fn process_recorded(&self, job: &Task<'_>) -> Processed {
        self.process(job).await.into()
    }
}
