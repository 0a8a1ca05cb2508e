pub use shared::testkit::{
    consumer_config as config, consumer_context as context, message, publish, tenant,
};
