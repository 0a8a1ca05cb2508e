//! The consumer function: processes `aws:rmq` batches (Amazon MQ for RabbitMQ) and, outside
//! Lambda, plays Amazon MQ's part with the local event source.
//!
//! - `rmq`: the handler Lambda runs, the same in every mode; `lambda`: the runtime loop around it;
//! - `local`: what plays AWS outside AWS (the event source mappings, the Lambda rules around an
//!   invocation, the tenant's capacity).

pub mod lambda;
pub mod local;
pub mod observability;
pub mod rmq;
