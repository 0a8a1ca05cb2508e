//! Support for the system tests: the workspace's function binaries run as real processes.

pub mod processes;

pub use processes::{bin, root};
