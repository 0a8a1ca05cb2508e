//! The API outside Lambda: a plain HTTP server on `SERVER_HOST:SERVER_PORT`, after creating
//! and migrating the database, with the outbox relay and the process gauges in the background.

use anyhow::Context as _;
use shared::{AppContext, Config, observability::metrics};

use crate::{ApiState, router};

pub async fn serve(config: Config) -> anyhow::Result<()> {
    shared::db::ensure_database(&config).await?;
    shared::db::migrate(&config).await?;
    let addr = format!("{}:{}", config.server_host, config.server_port);
    let ctx = AppContext::new(config, "api")?;
    let state = ApiState::try_new(ctx.clone())?;
    let relay = ctx
        .config
        .relay
        .enabled
        .then(|| shared::outbox::relay::spawn(ctx.clone()));
    // The recorder must exist before the first gauge sample, or that sample is lost and
    // /metrics lacks the process gauges until the next one.
    if ctx.config.metrics_enabled {
        metrics::prometheus();
    }
    let gauges = metrics::spawn_process_gauges(ctx.clone());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "API listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shared::shutdown::signal())
        .await?;
    if let Some(r) = relay {
        r.abort();
    }
    gauges.abort();
    shared::shutdown::close(&ctx).await;
    Ok(())
}
