//! The consumer function: processes `aws:rmq` batches (Amazon MQ for RabbitMQ) and, outside
//! Lambda, plays Amazon MQ's part with the local event source.

pub mod capacity;
pub mod dispatch;
pub mod event_source;
pub mod observability;
pub mod rmq;
