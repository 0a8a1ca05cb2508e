//! API integration tests over the real PostgreSQL and RabbitMQ. Each test creates its own
//! tenants (so its own broker queues) and runs in parallel with the others.

mod apigw_events;
mod auth;
mod brokers;
mod capacity;
mod config_file;
mod consumers;
mod faults;
mod helpers;
mod jwt;
mod limits;
mod messages;
mod relay;
mod replay;
mod retention;
mod schedule;
mod tenants;
