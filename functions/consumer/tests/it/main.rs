//! Consumer integration tests over the real PostgreSQL and RabbitMQ. Each test has its own
//! tenants, and its event source consumes only those tenants' queues.

mod deadline;
mod events;
mod helpers;
mod isolation;
mod kill;
mod lambda_mode;
mod observability;
mod processes;
mod retries;
mod webhook;
