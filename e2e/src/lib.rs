//! No library: this package holds the tests of the local Lambda loop (`tests/lambda_loop`),
//! which run the functions as `make dev` does and talk to them only over HTTP, SQS and Lambda.
