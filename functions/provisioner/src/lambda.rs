//! The provisioner under the Lambda runtime: `aws:sqs` batches of control jobs and the
//! schedule's bare `{"kind":"relay"}`, each handled by [`crate::batch::handle`].

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use shared::{AppContext, Config};
use tracing::Instrument;

use crate::{batch, jobs::Provisioner};

pub async fn run(config: Config) -> anyhow::Result<()> {
    // As the API does: the first cold start after a deploy applies pending migrations
    // (advisory-locked), so the scheduled relay brings the schema up even before traffic.
    if let Err(e) = shared::db::migrate(&config).await {
        tracing::error!(error = format!("{e:#}"), "migrations not applied at start");
    }
    let ctx = AppContext::new(config, "provisioner-lambda")?;
    shared::shutdown::close_on_lambda_shutdown(ctx.clone()).await;
    let p = Arc::new(Provisioner::from_env(ctx).await);
    // The account's concurrency limit for the API's concurrency budget, once per cold start.
    p.refresh_account_limit().await;
    // A deploy starts new instances: each asks for the template's version to be rolled out to
    // the tenant functions; the first to record it in PostgreSQL submits the rollout job.
    if let Err(e) = p.request_rollout().await {
        tracing::warn!(error = format!("{e:#}"), "rollout not requested at start");
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let p = p.clone();
        // Every log line of the invocation carries Lambda's request id.
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
        async move {
            batch::handle(&p, event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
        .instrument(span)
    }))
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
