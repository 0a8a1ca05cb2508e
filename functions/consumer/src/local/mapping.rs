//! One Amazon MQ event source mapping, played locally: it consumes one tenant work queue and
//! invokes the function with one batch at a time.
//!
//! - One invocation in flight: the loop awaits each invocation before it gathers the next
//!   batch (Amazon MQ runs one execution environment per RabbitMQ mapping).
//! - A batch is sent when it holds the mapping's batch size, when its window (opened by its
//!   first record) ends, or when the next record would take the event over the payload limit;
//!   a record over the limit on its own is dropped: acknowledged, logged and counted.
//! - Success acknowledges the whole batch; a failure or a timeout returns the whole batch to
//!   the broker (nack with requeue, so it comes back `redelivered`), and the mapping pauses
//!   before its next invocation.

use std::{sync::Arc, time::Instant};

use futures::StreamExt;
use lapin::{
    Channel, Consumer,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};
use shared::broker::{Broker, QueueRef};
use tokio::sync::watch;

use super::{
    Stats,
    batch::{Batch, Batcher, Offer, Record},
    capacity::Gate,
    dispatch::Dispatcher,
    event_source::Options,
};

pub(super) struct Mapping {
    /// The connection its channel is on (`super::connections`), not the process's own.
    pub broker: Arc<Broker>,
    pub dispatcher: Dispatcher,
    pub opts: Options,
    pub queue: QueueRef,
    pub gate: Arc<Gate>,
    pub stats: Arc<Stats>,
}

impl Mapping {
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.broker.ensure_queue(&self.queue).await?;
        let vhost = self.broker.connection().await?.status().vhost().to_string();
        let channel = self.broker.channel().await?;
        // Room for the batch being handled plus the next one, so batches flow back to back.
        let batch_size = self.opts.batching.batch_size as usize;
        let prefetch = (batch_size * 2).min(u16::MAX as usize);
        channel
            .basic_qos(prefetch as u16, BasicQosOptions::default())
            .await?;
        let tag = format!("local-event-source.{}", self.queue.queue_name);
        let mut deliveries = channel
            .basic_consume(
                shared::broker::work_queue(&self.queue).into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let batcher = Batcher::new(self.queue.clone(), vhost, batch_size);

        let result: anyhow::Result<()> = async {
            let mut carried: Option<Record> = None;
            loop {
                let Some(batch) = self
                    .next_batch(&batcher, &mut deliveries, &channel, &mut carried, &mut stop)
                    .await?
                else {
                    return Ok(());
                };
                // Held while the invocation runs: the tenant's capacity counts invocations.
                let permit = tokio::select! {
                    biased;
                    // Not acknowledged: closing the channel returns the batch.
                    _ = stop.changed() => return Ok(()),
                    p = self.gate.acquire() => p,
                };
                let records = batch.len();
                let (event, last_tag) = batch.into_event();
                let outcome = self
                    .dispatcher
                    .dispatch(&event, self.opts.function_timeout)
                    .await;
                drop(permit);
                match outcome {
                    Ok(()) => {
                        channel
                            .basic_ack(last_tag, BasicAckOptions { multiple: true })
                            .await?
                    }
                    Err(e) => {
                        tracing::warn!(tenant_id = %self.queue.tenant_id, queue = %self.queue.queue_name,
                            records, error = %format!("{e:#}"), "invocation failed; its batch goes back to the queue");
                        let requeue = BasicNackOptions {
                            multiple: true,
                            requeue: true,
                        };
                        channel.basic_nack(last_tag, requeue).await?;
                        tokio::select! {
                            _ = stop.changed() => return Ok(()),
                            _ = tokio::time::sleep(self.opts.redelivery_pause) => {}
                        }
                    }
                }
            }
        }
        .await;
        // Unacknowledged deliveries (prefetched, or a batch cut short) go back to the queue.
        let _ = channel.close(200, "consumer stopping".into()).await;
        result
    }

    /// The next batch; `None` when told to stop (what it held goes back with the channel).
    async fn next_batch(
        &self,
        batcher: &Batcher,
        deliveries: &mut Consumer,
        channel: &Channel,
        carried: &mut Option<Record>,
        stop: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Batch>> {
        let window = self.opts.batching.window();
        let mut batch = batcher.batch();
        let mut window_ends: Option<Instant> = None;
        loop {
            let record = match carried.take() {
                Some(r) => r,
                None if batch.is_full() => break,
                None => {
                    let next = tokio::select! {
                        biased;
                        _ = stop.changed() => return Ok(None),
                        next = async {
                            match window_ends {
                                None => Some(deliveries.next().await),
                                // Polls the consumer before the clock, so a zero window still
                                // takes what has already arrived.
                                Some(end) => tokio::time::timeout_at(end.into(), deliveries.next())
                                    .await
                                    .ok(),
                            }
                        } => next,
                    };
                    match next {
                        None => break, // the window ended
                        Some(Some(d)) => batcher.record(&d?),
                        Some(None) => anyhow::bail!("the broker cancelled the consumer"),
                    }
                }
            };
            match batch.offer(record) {
                Offer::Taken => {
                    window_ends.get_or_insert_with(|| Instant::now() + window);
                }
                Offer::Full(r) => {
                    *carried = Some(r);
                    break;
                }
                Offer::Oversized(r) => self.drop_record(channel, r).await?,
            }
        }
        Ok(Some(batch))
    }

    /// Amazon MQ's mapping drops a record too large for an invocation: it never reaches the
    /// function and is not redelivered.
    async fn drop_record(&self, channel: &Channel, r: Record) -> anyhow::Result<()> {
        channel
            .basic_ack(r.delivery_tag, BasicAckOptions { multiple: false })
            .await?;
        let dropped = self.stats.record_dropped();
        tracing::error!(tenant_id = %self.queue.tenant_id, queue = %self.queue.queue_name,
            message_id = r.message.basic_properties.message_id.as_deref().unwrap_or("-"),
            bytes = r.bytes, limit = super::batch::MAX_PAYLOAD_BYTES, dropped_so_far = dropped,
            "record too large for an invocation: dropped (acknowledged, never invoked), as Amazon MQ's mapping drops it");
        Ok(())
    }
}
