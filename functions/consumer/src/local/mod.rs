//! What plays AWS outside AWS: the Amazon MQ for RabbitMQ event source mappings that invoke the
//! consumer function, and the Lambda rules around an invocation. The handler the function runs
//! (`crate::rmq`) is the same either way; only what invokes it differs.
//!
//! The emulation is no more forgiving than the service it plays; each rule it enforces, its AWS
//! source and its test are listed in the README ("The local event source: what it enforces"):
//!
//! - one invocation in flight per mapping (queue), whatever the tenant's capacity (`mapping`);
//! - the mapping's batch size and window, and Lambda's 6 MB payload limit (`batch`);
//! - the function timeout: an invocation still running then is abandoned (`dispatch`);
//! - a failed invocation returns its whole batch to the broker, a successful one acknowledges
//!   all of it (`mapping`);
//! - the tenant's capacity (reserved concurrency) caps its invocations across queues (`capacity`).
//!
//! Its own footprint is bounded too: a queue that may not run (paused, or its tenant at
//! capacity 0) holds no channel and no prefetched message, and the channels are spread over
//! connections of at most `CONSUMER_CHANNELS_PER_CONNECTION` (`connections`).

pub mod batch;
pub mod capacity;
mod connections;
pub mod dispatch;
pub mod event_source;
mod mapping;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use shared::{
    AppContext, Config,
    delivery::{BatchHandler, Processor},
};

use dispatch::Dispatcher;
use event_source::{EventSource, Options};

/// Outside Lambda: creates and migrates the database, then runs the event source until SIGTERM
/// or Ctrl-C. Each batch goes to the handler in process, or through the Lambda Invoke API when
/// `CONSUMER_INVOKE_ENDPOINT` is set (the local Lambda loop).
pub async fn run(config: Config, processor: Arc<dyn Processor>) -> anyhow::Result<()> {
    shared::db::ensure_database(&config).await?;
    shared::db::migrate(&config).await?;
    let ctx = AppContext::new(config, "consumer")?;
    let consumer = &ctx.config.consumer;
    let dispatcher = match &consumer.invoke_endpoint {
        Some(endpoint) => {
            tracing::info!(%endpoint, function = %consumer.function_name,
                "invoking the consumer function through the Lambda Invoke API");
            Dispatcher::invoke(endpoint, &consumer.function_name)?
        }
        None => Dispatcher::InProcess(Arc::new(BatchHandler::new(ctx.clone(), processor))),
    };
    if ctx.config.metrics_enabled {
        crate::observability::serve(ctx.clone()).await?;
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shared::shutdown::signal().await;
        let _ = stop.send(true);
    });
    EventSource::new(ctx.clone(), dispatcher, Options::from_config(&ctx.config))
        .run(stop_rx)
        .await;
    shared::shutdown::close(&ctx).await;
    Ok(())
}

/// What the local event source counts that has no place in an invocation.
#[derive(Debug, Default)]
pub struct Stats {
    records_dropped: AtomicU64,
}

impl Stats {
    /// Records too large for any invocation, acknowledged and never invoked with.
    pub fn records_dropped(&self) -> u64 {
        self.records_dropped.load(Ordering::Relaxed)
    }

    fn record_dropped(&self) -> u64 {
        self.records_dropped.fetch_add(1, Ordering::Relaxed) + 1
    }
}
