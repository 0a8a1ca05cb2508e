//! Consumer integration tests over the real PostgreSQL and RabbitMQ. Each test has its own
//! tenants, and its event source consumes only those tenants' queues.

mod aws_fixtures;
mod brokers;
mod deadline;
mod emulator;
mod events;
mod footprint;
mod helpers;
mod isolation;
mod kill;
mod ordering;
mod replay;
mod retries;
mod shutdown;
mod tiers;
mod webhook;
