//! `make bench`: measures the service against the raw limit of this machine (an INSERT plus a
//! confirmed persistent publish, without the service), side by side in the same run.

pub mod broker_budget;
pub mod database;
pub mod e2e;
pub mod large;
pub mod load;
pub mod processes;
pub mod report;
pub mod scenarios;
pub mod startup;
pub mod stats;
