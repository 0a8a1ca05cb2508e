//! The use cases the API and the functions call: each validates, applies the tenant's rules and
//! limits, and uses storage, the broker and the control plane to do it. Handlers stay thin.

pub mod brokers;
pub mod capacity;
pub mod consumers;
pub mod dead_letters;
pub mod limits;
pub mod messages;
pub mod replay;
pub mod retention;
pub mod tenants;
