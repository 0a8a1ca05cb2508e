//! The provisioner function. Inside Lambda it handles `aws:sqs` batches of control jobs and
//! the schedule's bare `{"kind":"relay"}`. Outside Lambda it runs jobs in process:
//! `provisioner run '<job json>'` executes one job; `provisioner` alone runs the outbox relay on
//! its interval. `provisioner trigger [--invoke <url>] [--function <name>]` plays the
//! function's AWS triggers for the local Lambda loop (see `local`).

use lambda_runtime::{LambdaEvent, service_fn};
use provisioner::{batch, jobs::Provisioner};
use serde_json::Value;
use shared::{AppContext, Config, control_plane::Job, observability::telemetry};
use tracing::Instrument;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config);

    if shared::running_in_lambda() {
        // As the API does: the first cold start after a deploy applies pending migrations
        // (advisory-locked), so the scheduled relay brings the schema up even before traffic.
        if let Err(e) = shared::db::migrate(&config).await {
            tracing::error!(error = format!("{e:#}"), "migrations not applied at start");
        }
        let ctx = AppContext::new(config, "provisioner-lambda")?;
        shared::shutdown::close_on_lambda_shutdown(ctx.clone()).await;
        let p = std::sync::Arc::new(Provisioner::from_env(ctx).await);
        return lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
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
        .map_err(|e| anyhow::anyhow!(e));
    }

    shared::db::ensure_database(&config).await?;
    shared::db::migrate(&config).await?;
    let ctx = AppContext::new(config, "provisioner")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, job] if cmd == "run" => {
            let job: Job = serde_json::from_str(job)?;
            Provisioner::from_env(ctx).await.run(&job).await
        }
        [cmd, rest @ ..] if cmd == "trigger" => provisioner::local::trigger(&ctx, rest).await,
        [] => {
            shared::outbox::relay::spawn(ctx).await?;
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: provisioner [run '<job json>' | trigger [--invoke <url>] [--function <name>]]"
        ),
    }
}
