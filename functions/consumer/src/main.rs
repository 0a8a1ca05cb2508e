//! The consumer function. Inside Lambda it handles `aws:rmq` events from Amazon MQ; outside,
//! it runs the local event source, which calls the same handler in process or invokes a
//! function through the Lambda Invoke API (`CONSUMER_INVOKE_ENDPOINT`).

use std::sync::Arc;

use shared::{Config, delivery::Builtin, observability::telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `--config <file>` or `CONFIG_FILE`: a configuration file under the environment.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::load(shared::config_file::take_config_arg(&mut args))?;
    telemetry::init(&config);
    // Deployers with their own business logic swap in their `Processor` here.
    let processor = Arc::new(Builtin::new(&config.webhook)?);
    if shared::running_in_lambda() {
        consumer::lambda::run(config, processor).await
    } else {
        consumer::local::run(config, processor).await
    }
}
