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

#[async_trait::async_trait]
pub trait Processor: Send + Sync {
    async fn process(&self, job: &Task<'_>) -> Outcome;
}
