//! The consumer under the Lambda runtime (in AWS, or under `cargo lambda watch`): every
//! invocation is one `aws:rmq` event handed to [`crate::rmq::handle_event`].

use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use shared::{
    AppContext, Config,
    delivery::{BatchHandler, Processor},
    observability::metrics,
};
use tracing::Instrument;

use crate::rmq::{self, RmqEvent};

pub async fn run(config: Config, processor: Arc<dyn Processor>) -> anyhow::Result<()> {
    // Metrics go to CloudWatch as EMF on stdout, flushed after every invocation.
    let emf = metrics::cloudwatch()?;
    let ctx = AppContext::new(config, "consumer-lambda")?;
    ctx.warm_up().await;
    shared::shutdown::close_on_lambda_shutdown(ctx.clone()).await;
    let handler = Arc::new(BatchHandler::new(ctx.clone(), processor));
    rmq::register_metrics();
    metrics::emf_lambda::handler::run(
        emf,
        // Any JSON reaches the handler: decoding is lenient (rmq::event), so no message of an
        // event can fail the invocation before it is looked at.
        move |event: LambdaEvent<serde_json::Value>| {
            let (handler, ctx) = (handler.clone(), ctx.clone());
            // Every log line of the invocation carries Lambda's request id.
            let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
            async move {
                let deadline = rmq::invocation_deadline(
                    event.context.deadline(),
                    handler.context().config.consumer.function_timeout,
                );
                let event = RmqEvent::decode(event.payload);
                let outcome = rmq::handle_event(&handler, &event, deadline).await;
                metrics::record_process_gauges(&ctx);
                outcome.map_err(|e| -> lambda_runtime::Error { e.to_string().into() })
            }
            .instrument(span)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))
}
