//! The provisioner: executes control-plane jobs with the Lambda API (tenant functions,
//! reserved concurrency, Amazon MQ event source mappings, each tenant's tier) and records what
//! it applied.

pub mod batch;
pub mod jobs;
pub mod lambda;
pub mod local;
pub mod tiers;
