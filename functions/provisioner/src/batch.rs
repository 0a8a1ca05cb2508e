//! The function's input: an `aws:sqs` batch of jobs (answered with the failed ones only, so
//! SQS redelivers just those and, after `maxReceiveCount`, moves them to the DLQ), or one bare
//! job such as the schedule's `{"kind":"relay"}`.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::Value;
use shared::control_plane::Job;

use crate::jobs::Provisioner;

pub async fn handle(p: &Provisioner, input: Value) -> anyhow::Result<Value> {
    if input.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(input)?;
        Ok(serde_json::to_value(handle_sqs(p, event).await)?)
    } else {
        let job: Job = serde_json::from_value(input)?;
        p.run(&job).await?;
        Ok(serde_json::json!({ "ok": true }))
    }
}

pub async fn handle_sqs(p: &Provisioner, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let outcome = match serde_json::from_str::<Job>(record.body.as_deref().unwrap_or("")) {
            Ok(job) => p.run(&job).await,
            Err(e) => Err(anyhow::anyhow!("not a job: {e}")),
        };
        if let Err(e) = outcome {
            tracing::warn!(message_id = %id, error = %format!("{e:#}"), "control job failed");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}
