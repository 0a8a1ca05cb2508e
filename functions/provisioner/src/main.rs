//! The provisioner function. Inside Lambda it handles `aws:sqs` batches of control jobs and
//! the schedule's bare `{"kind":"relay"}`. Outside Lambda it runs jobs in process:
//! `provisioner run '<job json>'` executes one job; `provisioner` alone runs the outbox relay on
//! its interval. `provisioner trigger [--invoke <url>] [--function <name>]` plays the
//! function's AWS triggers for the local Lambda loop (see `local_trigger`).

use anyhow::Context as _;
use lambda_runtime::{LambdaEvent, service_fn};
use provisioner::{batch, jobs::Provisioner, local_trigger::LocalTrigger};
use serde_json::Value;
use shared::{AppContext, Config, control_plane::Job, telemetry};
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
        [cmd, rest @ ..] if cmd == "trigger" => trigger(&ctx, rest).await,
        [] => {
            shared::relay::spawn(ctx).await?;
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: provisioner [run '<job json>' | trigger [--invoke <url>] [--function <name>]]"
        ),
    }
}

async fn trigger(ctx: &AppContext, args: &[String]) -> anyhow::Result<()> {
    let (mut invoke, mut function) = (
        "http://127.0.0.1:9000".to_string(),
        "provisioner".to_string(),
    );
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--invoke" => invoke = value.clone(),
            "--function" => function = value.clone(),
            other => anyhow::bail!("unknown option {other:?}"),
        }
    }
    let queue = ctx
        .config
        .control
        .queue_url
        .as_deref()
        .context("CONTROL_QUEUE_URL is required for the trigger")?;
    let trigger = LocalTrigger::new(queue, &invoke, &function).await?;
    tracing::info!(%queue, %invoke, %function, "invoking the provisioner for control jobs and the relay schedule");
    let relay = ctx
        .config
        .relay
        .enabled
        .then_some(ctx.config.relay.interval);
    tokio::select! {
        _ = trigger.run_queue() => {}
        _ = async {
            match relay {
                Some(every) => trigger.run_schedule(every).await,
                None => std::future::pending().await,
            }
        } => {}
        _ = shared::shutdown::signal() => {}
    }
    Ok(())
}
