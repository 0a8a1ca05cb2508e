//! Outside AWS, plays the two triggers the provisioner function has in AWS: the SQS event
//! source mapping on the control queue, and the relay schedule. It long-polls the control
//! queue (LocalStack's SQS), invokes the function through the Lambda Invoke API
//! (`cargo lambda watch` serves one) with the `aws:sqs` event AWS would send, and deletes the
//! messages the function did not report as failed. A failed one stays in the queue and comes
//! back after its visibility timeout; the queue's redrive policy moves it to the DLQ, exactly
//! as in AWS.

use std::{collections::HashSet, time::Duration};

use anyhow::Context as _;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use shared::{control_plane::Job, local::invoke::Invoker};

/// Up to 10 messages per batch, as an SQS event source mapping's default batch size.
const BATCH_SIZE: i32 = 10;
const LONG_POLL_SECONDS: i32 = 2;

pub struct LocalTrigger {
    sqs: aws_sdk_sqs::Client,
    function: Invoker,
    queue_url: String,
    queue_arn: String,
    region: String,
}

impl LocalTrigger {
    /// SQS from the environment (`AWS_ENDPOINT_URL`), invocations to `invoke_endpoint`.
    pub async fn new(
        queue_url: &str,
        invoke_endpoint: &str,
        function: &str,
    ) -> anyhow::Result<Self> {
        let sdk = aws_config::load_from_env().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .with_context(|| format!("cannot read the control queue {queue_url}"))?;
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        Ok(Self {
            sqs,
            function: Invoker::new(invoke_endpoint, function)?,
            queue_url: queue_url.to_string(),
            queue_arn,
            region,
        })
    }

    /// Polls and invokes until the process ends; a failure is logged and retried.
    pub async fn run_queue(&self) {
        loop {
            if let Err(e) = self.poll_once().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "control queue poll failed; retrying"
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }

    /// Invokes the function with `{"kind":"relay"}` on every tick, as the schedule does.
    pub async fn run_schedule(&self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.function.invoke(&Job::Relay).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "scheduled relay invocation failed"
                );
            }
        }
    }

    /// One receive, one invocation, the deletes. Returns how many messages were received.
    pub async fn poll_once(&self) -> anyhow::Result<usize> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(BATCH_SIZE)
            .wait_time_seconds(LONG_POLL_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(0);
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.record(m)).collect();
        // A failed invocation deletes nothing: the whole batch comes back, as in AWS.
        let response: SqsBatchResponse =
            serde_json::from_slice(&self.function.invoke(&event).await?)
                .context("the function's answer is not an SQS batch response")?;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !failed.contains(m.message_id().unwrap_or_default()))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle().map(str::to_string))
                    .build()
                    .ok()
            })
            .collect();
        if !failed.is_empty() {
            tracing::warn!(
                failed = failed.len(),
                "control jobs failed; SQS redelivers them"
            );
        }
        if !done.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await?;
        }
        Ok(messages.len())
    }

    fn record(&self, m: &Message) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id().map(str::to_string);
        r.receipt_handle = m.receipt_handle().map(str::to_string);
        r.body = m.body().map(str::to_string);
        r.md5_of_body = m.md5_of_body().map(str::to_string);
        r.attributes = m
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        r.event_source = Some("aws:sqs".into());
        r.event_source_arn = Some(self.queue_arn.clone());
        r.aws_region = Some(self.region.clone());
        r
    }
}
