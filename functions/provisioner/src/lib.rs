//! The provisioner: executes control-plane jobs with the Lambda API (tenant functions,
//! reserved concurrency, Amazon MQ event source mappings, each tenant's tier) and records what
//! it applied.

pub mod batch;
pub mod function_spec;
pub mod hold;
pub mod jobs;
pub mod lambda;
pub mod local;
pub mod mappings;
pub mod reconcile;
pub mod rollout;
pub mod tiers;
