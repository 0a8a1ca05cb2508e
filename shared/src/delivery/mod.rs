//! Delivery: what the consumer does with a batch of one tenant queue's messages, and what
//! processing one message means.
//!
//! - [`batch`]: claim, run up to `workers` at once, settle each (the same whether Amazon MQ or
//!   the local event source delivered the batch);
//! - [`retry`]: parking a failed message in a wait queue, or dead-lettering it;
//! - [`processor`]: the [`Processor`] trait deployers implement, and the built-in ones
//!   ([`Builtin`]: acknowledge-only or a signed HTTP delivery through [`WebhookProcessor`]).

mod address_guard;
mod batch;
mod builtin;
mod excerpt;
pub mod processor;
pub mod retry;
pub mod signature;
mod webhook;

pub use address_guard::is_public;
pub use batch::*;
pub use builtin::Builtin;
pub use processor::{HttpResponse, Outcome, Processed, Processor, Task};
pub use webhook::WebhookProcessor;
