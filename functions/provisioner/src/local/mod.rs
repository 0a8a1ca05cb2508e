//! What plays the provisioner's AWS triggers outside AWS, for the local Lambda loop: the SQS
//! event source mapping on the control queue and the relay schedule (`trigger`), and the
//! in-process mode the function runs in outside Lambda ([`run`]).

pub mod trigger;

use anyhow::Context as _;
use shared::{AppContext, Config, control_plane::Job};

pub use trigger::LocalTrigger;

use crate::jobs::Provisioner;

/// Outside Lambda, after creating and migrating the database: `run '<job json>'` executes one
/// job; `trigger ...` plays the function's AWS triggers (below); no arguments runs the outbox
/// relay on its interval.
pub async fn run(config: Config, args: &[String]) -> anyhow::Result<()> {
    shared::db::ensure_database(&config).await?;
    shared::db::migrate(&config).await?;
    let ctx = AppContext::new(config, "provisioner")?;
    match args {
        [cmd, job] if cmd == "run" => {
            let job: Job = serde_json::from_str(job)?;
            let p = Provisioner::from_env(ctx).await;
            p.refresh_account_limit().await;
            p.run(&job).await
        }
        [cmd, rest @ ..] if cmd == "trigger" => trigger(&ctx, rest).await,
        [] => {
            shared::outbox::relay::spawn(ctx).await?;
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: provisioner [run '<job json>' | trigger [--invoke <url>] [--function <name>]]"
        ),
    }
}

/// `provisioner trigger [--invoke <url>] [--function <name>]`: invokes the provisioner function
/// through the Lambda Invoke API for each control-queue batch and on the relay's interval,
/// until SIGTERM or Ctrl-C.
pub async fn trigger(ctx: &AppContext, args: &[String]) -> anyhow::Result<()> {
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
