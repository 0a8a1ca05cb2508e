//! The consumer process's own metrics outside Lambda: Prometheus text on
//! `CONSUMER_METRICS_PORT`, with process and queue gauges sampled every few seconds.

use std::time::Duration;

use axum::{Router, http::header, routing::get};
use shared::AppContext;

pub async fn serve(ctx: AppContext) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let handle = shared::observability::metrics::prometheus();
    crate::rmq::register_metrics();
    let path = ctx.config.metrics_path.clone();
    let scraped = ctx.clone();
    let app = Router::new().route(
        &path,
        get(move || {
            // Process gauges at scrape time, so a scrape is never older than itself.
            shared::observability::metrics::record_process_gauges(&scraped);
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    );
    let addr = format!(
        "{}:{}",
        ctx.config.server_host, ctx.config.consumer_metrics_port
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(%addr, %path, "consumer metrics listening");
    tokio::spawn(sample(ctx));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}

async fn sample(ctx: AppContext) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        shared::observability::metrics::record_process_gauges(&ctx);
        if let Err(e) = shared::observability::metrics::record_queue_gauges(&ctx).await {
            tracing::warn!(error = %e, "cannot sample queue gauges");
        }
    }
}
