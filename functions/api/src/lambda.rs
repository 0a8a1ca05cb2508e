//! The API under the Lambda runtime (API Gateway through `lambda_http`, or `cargo lambda
//! watch`): the same Router, API Gateway's request ids, metrics as EMF.

use shared::{AppContext, Config, observability::metrics};

use crate::{ApiState, router, with_gateway_request_id};

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Metrics go to CloudWatch as EMF on stdout, flushed after every invocation.
    let emf = metrics::cloudwatch()?;
    // The schema follows the code: the first cold start after a deploy applies pending
    // migrations (under an advisory lock; only a read when the schema is current). A database
    // that is down fails requests, not the start, so /health can say why.
    if let Err(e) = shared::db::migrate(&config).await {
        tracing::error!(error = format!("{e:#}"), "migrations not applied at start");
    }
    let ctx = AppContext::new(config, "api-lambda")?;
    ctx.warm_up().await;
    shared::shutdown::close_on_lambda_shutdown(ctx.clone()).await;
    metrics::emf_lambda::service::run_http(
        emf,
        with_gateway_request_id(router(ApiState::try_new(ctx)?)),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
