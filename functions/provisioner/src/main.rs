//! The provisioner function. Inside Lambda it handles `aws:sqs` batches of control jobs and
//! the schedule's bare `{"kind":"relay"}`. Outside Lambda it runs jobs in process:
//! `provisioner run '<job json>'` executes one job; `provisioner` alone runs the outbox relay on
//! its interval. `provisioner trigger [--invoke <url>] [--function <name>]` plays the
//! function's AWS triggers for the local Lambda loop (see `local`).

use shared::{Config, observability::telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--config <file>` or `CONFIG_FILE`: a configuration file under the environment.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::load(shared::config_file::take_config_arg(&mut args))?;
    telemetry::init(&config);
    if shared::running_in_lambda() {
        provisioner::lambda::run(config).await
    } else {
        let args: Vec<String> = std::env::args().skip(1).collect();
        provisioner::local::run(config, &args).await
    }
}
