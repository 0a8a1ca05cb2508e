//! The API function. Inside Lambda the runtime drives the Router; outside, a plain HTTP server
//! serves it on `SERVER_HOST:SERVER_PORT`, after creating the database and migrating it, with
//! the outbox relay running in the background.
//!
//! Subcommands for local use: `api migrate` applies migrations; `api token --admin` or
//! `api token --tenant <id> [--ttl <seconds>]` prints a signed JWT.

use anyhow::{Context, bail};
use api::{ApiState, router};
use shared::{AppContext, Config, auth, config::DEV_JWT_SECRET, observability::telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("token") => return print_token(&config, &args[1..]),
        Some("migrate") => {
            telemetry::init(&config);
            shared::db::ensure_database(&config).await?;
            return shared::db::migrate(&config).await;
        }
        Some(other) => bail!("unknown command {other:?}; expected token or migrate"),
        None => {}
    }

    telemetry::init(&config);
    if config.jwt.hs256_enabled && config.jwt_secret == DEV_JWT_SECRET {
        tracing::warn!("JWT_SECRET is the development default; set it outside local development");
    }
    if shared::running_in_lambda() {
        // Metrics go to CloudWatch as EMF on stdout, flushed after every invocation.
        let emf = shared::observability::metrics::cloudwatch()?;
        // The schema follows the code: the first cold start after a deploy applies pending
        // migrations (under an advisory lock; only a read when the schema is current). A
        // database that is down fails requests, not the start, so /health can say why.
        if let Err(e) = shared::db::migrate(&config).await {
            tracing::error!(error = format!("{e:#}"), "migrations not applied at start");
        }
        let ctx = AppContext::new(config, "api-lambda")?;
        ctx.warm_up().await;
        shared::shutdown::close_on_lambda_shutdown(ctx.clone()).await;
        return shared::observability::metrics::emf_lambda::service::run_http(
            emf,
            api::with_gateway_request_id(router(ApiState::try_new(ctx)?)),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e));
    }

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
        shared::observability::metrics::prometheus();
    }
    let gauges = shared::observability::metrics::spawn_process_gauges(ctx.clone());
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

fn print_token(config: &Config, args: &[String]) -> anyhow::Result<()> {
    let mut ttl = 24 * 3600;
    let mut claims = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--admin" => claims = Some(auth::Claims::admin("local-admin", 0)),
            "--tenant" => {
                let id = it.next().context("--tenant needs a tenant id")?;
                claims = Some(auth::Claims::tenant(id.parse()?, 0));
            }
            "--ttl" => ttl = it.next().context("--ttl needs seconds")?.parse()?,
            other => bail!("unknown option {other:?}"),
        }
    }
    let mut claims =
        claims.context("usage: api token (--admin | --tenant <id>) [--ttl <seconds>]")?;
    claims.exp += ttl;
    println!(
        "{}",
        auth::Authenticator::hs256(&config.jwt_secret).mint(&claims)?
    );
    Ok(())
}
