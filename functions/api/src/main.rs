//! The API function. Inside Lambda the runtime drives the Router; outside, a plain HTTP server
//! serves it on `SERVER_HOST:SERVER_PORT` (see `server`). `api migrate` and `api token` are
//! subcommands for local use (see `cli`); `--config <file>` (or `CONFIG_FILE`) adds a
//! configuration file under the environment (see `shared::config_file`).

use shared::{
    Config, config::DEV_JWT_SECRET, config_file::take_config_arg, observability::telemetry,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::load(take_config_arg(&mut args))?;
    if let Some(done) = api::cli::run(&config, &args).await {
        return done;
    }
    telemetry::init(&config);
    if config.jwt.hs256_enabled && config.jwt_secret == DEV_JWT_SECRET {
        tracing::warn!("JWT_SECRET is the development default; set it outside local development");
    }
    if shared::running_in_lambda() {
        api::lambda::run(config).await
    } else {
        api::server::serve(config).await
    }
}
