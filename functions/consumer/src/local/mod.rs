//! What plays AWS outside AWS: the Amazon MQ for RabbitMQ event source mappings that invoke the
//! consumer function, and the Lambda rules around an invocation. The handler the function runs
//! (`crate::rmq`) is the same either way; only what invokes it differs.
//!
//! The emulation is no more forgiving than the service it plays; each rule it enforces, its AWS
//! source and its test are listed in the README ("The local event source: what it enforces"):
//!
//! - one invocation in flight per mapping (queue), whatever the tenant's capacity (`mapping`);
//! - the mapping's batch size and window, and Lambda's 6 MB payload limit (`batch`);
//! - the function timeout: an invocation still running then is abandoned (`dispatch`);
//! - a failed invocation returns its whole batch to the broker, a successful one acknowledges
//!   all of it (`mapping`);
//! - the tenant's capacity (reserved concurrency) caps its invocations across queues (`capacity`).

pub mod batch;
pub mod capacity;
pub mod dispatch;
pub mod event_source;
mod mapping;

use std::sync::atomic::{AtomicU64, Ordering};

/// What the local event source counts that has no place in an invocation.
#[derive(Debug, Default)]
pub struct Stats {
    records_dropped: AtomicU64,
}

impl Stats {
    /// Records too large for any invocation, acknowledged and never invoked with.
    pub fn records_dropped(&self) -> u64 {
        self.records_dropped.load(Ordering::Relaxed)
    }

    fn record_dropped(&self) -> u64 {
        self.records_dropped.fetch_add(1, Ordering::Relaxed) + 1
    }
}
