//! What every function's local mode shares when it plays an AWS service: the Lambda Invoke API
//! client its triggers call `cargo lambda watch` through.

pub mod invoke;
