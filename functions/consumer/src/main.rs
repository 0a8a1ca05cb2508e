//! The consumer function. Inside Lambda it handles `aws:rmq` events from Amazon MQ; outside,
//! it runs the local event source, which calls the same handler in process or invokes a
//! function through the Lambda Invoke API (`CONSUMER_INVOKE_ENDPOINT`).

use std::sync::Arc;

use consumer::{
    local::{
        dispatch::Dispatcher,
        event_source::{EventSource, Options},
    },
    rmq::{RmqEvent, handle_event},
};
use lambda_runtime::LambdaEvent;
use shared::{
    AppContext, Config, delivery::BatchHandler, delivery::Builtin, observability::telemetry,
};
use tracing::Instrument;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    telemetry::init(&config);
    let processor = Arc::new(Builtin::new(&config.webhook)?);

    if shared::running_in_lambda() {
        // Metrics go to CloudWatch as EMF on stdout, flushed after every invocation.
        let emf = shared::observability::metrics::cloudwatch()?;
        let ctx = AppContext::new(config, "consumer-lambda")?;
        ctx.warm_up().await;
        shared::shutdown::close_on_lambda_shutdown(ctx.clone()).await;
        let handler = Arc::new(BatchHandler::new(ctx.clone(), processor));
        consumer::rmq::register_metrics();
        return shared::observability::metrics::emf_lambda::handler::run(
            emf,
            // Any JSON reaches the handler: decoding is lenient (rmq::event), so no message of an
            // event can fail the invocation before it is looked at.
            move |event: LambdaEvent<serde_json::Value>| {
                let (handler, ctx) = (handler.clone(), ctx.clone());
                // Every log line of the invocation carries Lambda's request id.
                let span =
                    tracing::info_span!("invocation", request_id = %event.context.request_id);
                async move {
                    let deadline = consumer::rmq::invocation_deadline(
                        event.context.deadline(),
                        handler.context().config.consumer.function_timeout,
                    );
                    let event = RmqEvent::decode(event.payload);
                    let outcome = handle_event(&handler, &event, deadline).await;
                    shared::observability::metrics::record_process_gauges(&ctx);
                    outcome.map_err(|e| -> lambda_runtime::Error { e.to_string().into() })
                }
                .instrument(span)
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e));
    }

    shared::db::ensure_database(&config).await?;
    shared::db::migrate(&config).await?;
    let ctx = AppContext::new(config, "consumer")?;
    let dispatcher = match &ctx.config.consumer.invoke_endpoint {
        Some(endpoint) => {
            tracing::info!(%endpoint, function = %ctx.config.consumer.function_name, "invoking the consumer function through the Lambda Invoke API");
            Dispatcher::invoke(endpoint, &ctx.config.consumer.function_name)?
        }
        None => Dispatcher::InProcess(Arc::new(BatchHandler::new(ctx.clone(), processor))),
    };
    if ctx.config.metrics_enabled {
        consumer::observability::serve(ctx.clone()).await?;
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shared::shutdown::signal().await;
        let _ = stop.send(true);
    });
    EventSource::new(ctx.clone(), dispatcher, Options::from_config(&ctx.config))
        .run(stop_rx)
        .await;
    shared::shutdown::close(&ctx).await;
    Ok(())
}
