//! RabbitMQ: one long-lived connection per [`Broker`] (one per process, plus the local event
//! source's consumer connections) with a few reused confirm channels, opened on first publish;
//! persistent publishing with publisher confirms, idempotent topology, and reconnection after
//! the broker restarts.

mod connection;
pub mod registry;
pub mod stats;
pub mod topology;

pub use connection::{Broker, BrokerError, Outbound};
pub use registry::{Brokers, Endpoint};
pub use topology::{QueueRef, parse_work_queue, retry_exchange, wait_queue, work_queue};

/// Header names the service sets on every broker message.
pub mod headers {
    pub const TENANT_ID: &str = "x-msg-tenant-id";
    pub const QUEUE_NAME: &str = "x-msg-queue";
}
