//! Domain types. Constructors reject bad input, so a value of these types is valid by
//! construction ("parse, don't validate").

pub mod bounds;
pub mod capacity;
pub mod consumer_config;
pub mod duration;
pub mod headers;
pub mod ids;
pub mod limits;
pub mod message;
pub mod names;
pub mod ordering;
pub mod page;
pub mod retention;
pub mod schedule;
pub mod tenant;

pub use capacity::{ConcurrencyBudget, Tier};
pub use consumer_config::{ConsumerConfig, ConsumerConfigUpdate, Workers};
pub use ids::{MessageId, TenantId};
pub use message::{Message, MessageStatus};
pub use names::{QueueName, TenantName};
pub use ordering::OnDeadLetter;
pub use page::{Page, PageRequest};
pub use tenant::{Tenant, TenantStatus};
