//! Subcommands for local use: `api migrate` applies migrations; `api token --admin` or
//! `api token --tenant <id> [--ttl <seconds>]` prints a signed JWT.

use anyhow::{Context as _, bail};
use shared::{Config, auth, observability::telemetry};

/// Runs the subcommand in `args`; `None` when there is none (serve the API).
pub async fn run(config: &Config, args: &[String]) -> Option<anyhow::Result<()>> {
    Some(match args.first()?.as_str() {
        "token" => print_token(config, &args[1..]),
        "migrate" => migrate(config).await,
        other => Err(anyhow::anyhow!(
            "unknown command {other:?}; expected token or migrate"
        )),
    })
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    telemetry::init(config);
    shared::db::ensure_database(config).await?;
    shared::db::migrate(config).await
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
