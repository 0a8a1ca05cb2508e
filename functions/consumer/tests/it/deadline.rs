//! A batch respects the invocation's deadline, and a message is leased only when a worker takes
//! it, so it never runs twice at once however long it waited for a worker.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use lapin::options::{BasicAckOptions, BasicGetOptions};
use shared::{
    AppContext,
    broker::{QueueRef, work_queue},
    config::SETTLE_MARGIN,
    delivery::{BatchHandler, Inbound},
    delivery::{Outcome, Processor, Task},
    domain::{MessageId, MessageStatus, QueueName, TenantId},
    testkit,
};

use crate::helpers::{config, configure, message, publish_many, tenant, wait_all};

/// Processing timeout of these tests: short, so a lease ends within seconds.
const PROCESSING_TIMEOUT: Duration = Duration::from_secs(1);

async fn context() -> AppContext {
    let mut c = config();
    c.consumer.processing_timeout = PROCESSING_TIMEOUT;
    shared::observability::telemetry::init(&c);
    testkit::context(c, "consumer-deadline-test").await
}

/// Sleeps per message and records, per message, how many copies ran at once at most.
struct Tracking {
    delay: Duration,
    running: Mutex<HashMap<MessageId, usize>>,
    peak: Mutex<HashMap<MessageId, usize>>,
}

impl Tracking {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            running: Mutex::default(),
            peak: Mutex::default(),
        })
    }
}

#[async_trait::async_trait]
impl Processor for Tracking {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        {
            let mut running = self.running.lock().unwrap();
            let n = running.entry(job.message_id).or_default();
            *n += 1;
            let mut peak = self.peak.lock().unwrap();
            let p = peak.entry(job.message_id).or_default();
            *p = (*p).max(*n);
        }
        tokio::time::sleep(self.delay).await;
        *self
            .running
            .lock()
            .unwrap()
            .get_mut(&job.message_id)
            .unwrap() -= 1;
        Outcome::Completed
    }
}

fn inbound(ids: &[MessageId]) -> Vec<Inbound> {
    ids.iter()
        .map(|id| Inbound {
            message_id: Some(id.to_string()),
            redelivered: false,
        })
        .collect()
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(900)
}

/// Takes everything waiting on the tenant queue's work queue off it; the message ids.
async fn drain_work_queue(ctx: &AppContext, queue: &QueueRef) -> Vec<String> {
    let channel = ctx.brokers.home().broker.channel().await.unwrap();
    let mut ids = Vec::new();
    while let Some(m) = channel
        .basic_get(
            work_queue(queue).as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap()
    {
        ids.push(m.properties.message_id().as_ref().unwrap().to_string());
        m.ack(BasicAckOptions::default()).await.unwrap();
    }
    ids
}

/// Workers 1, a batch of 10, each message taking most of the processing timeout: the batch runs
/// far longer than one lease. A second invocation with the same batch (Amazon MQ redelivering
/// it, or the relay republishing) arrives after the first message's lease would have ended had
/// the batch been leased at once. No message may run in both at once.
#[tokio::test]
async fn no_message_runs_twice_at_once_under_one_worker_and_a_long_batch() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    configure(&ctx, t, "long", 1, 0, 100, None).await;
    let ids = publish_many(&ctx, t, "long", 10).await;
    let queue = QueueRef::new(t, QueueName::parse("long").unwrap());
    let processor = Tracking::new(Duration::from_millis(800));
    let handler = BatchHandler::new(ctx.clone(), processor.clone());
    let batch = inbound(&ids);

    let lease = PROCESSING_TIMEOUT + SETTLE_MARGIN;
    let first = handler.handle(&queue, &batch, far());
    let second = async {
        tokio::time::sleep(lease + Duration::from_millis(500)).await;
        handler.handle(&queue, &batch, far()).await
    };
    let (first, second) = tokio::join!(first, second);
    let (first, second) = (first.unwrap(), second.unwrap());

    let peak = processor.peak.lock().unwrap().clone();
    let twice: Vec<_> = peak.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ran twice at once: {twice:?}");
    assert_eq!(peak.len(), 10, "every message ran");
    assert_eq!(
        first.completed + second.completed,
        10,
        "each completed once: {first:?} {second:?}"
    );
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(5),
    )
    .await;
    for id in &ids {
        assert_eq!(message(&ctx, t, *id).await.attempts, 1, "one attempt each");
    }
}

/// A batch that cannot finish before the deadline completes what fits, puts the rest back on
/// the work queue with their attempts unchanged, and still succeeds.
#[tokio::test]
async fn a_batch_stops_starting_messages_before_the_deadline_and_puts_the_rest_back() {
    let ctx = context().await;
    let t: TenantId = tenant(&ctx).await;
    configure(&ctx, t, "tight", 1, 3, 100, None).await;
    let ids = publish_many(&ctx, t, "tight", 10).await;
    let queue = QueueRef::new(t, QueueName::parse("tight").unwrap());
    // Published copies are on the work queue; this test plays the invocation that took them.
    assert_eq!(drain_work_queue(&ctx, &queue).await.len(), 10);
    let processor = Tracking::new(Duration::from_millis(300));
    let handler = BatchHandler::new(ctx.clone(), processor.clone());

    // Room to start messages for about 1.2 s: a message needs its processing timeout plus the
    // settle margin before the deadline.
    let deadline =
        Instant::now() + PROCESSING_TIMEOUT + SETTLE_MARGIN + Duration::from_millis(1200);
    let report = handler
        .handle(&queue, &inbound(&ids), deadline)
        .await
        .unwrap();
    assert!(Instant::now() < deadline, "returned before the deadline");
    assert!(report.completed >= 1, "{report:?}");
    assert!(report.put_back >= 1, "{report:?}");
    assert_eq!(report.completed + report.put_back, 10, "{report:?}");

    let mut back = drain_work_queue(&ctx, &queue).await;
    assert_eq!(back.len(), report.put_back, "the rest is on the work queue");
    let ran: Vec<MessageId> = processor.peak.lock().unwrap().keys().copied().collect();
    assert_eq!(ran.len(), report.completed);
    for id in &ids {
        let m = message(&ctx, t, *id).await;
        let attempts = shared::db::attempts::list(&ctx.db, t, *id).await.unwrap();
        if ran.contains(id) {
            assert_eq!(
                (m.status, m.attempts, attempts.len()),
                (MessageStatus::Completed, 1, 1)
            );
        } else {
            assert_eq!(
                (m.status, m.attempts, attempts.len()),
                (MessageStatus::Queued, 0, 0),
                "put back untouched"
            );
            let pos = back
                .iter()
                .position(|b| *b == id.to_string())
                .expect("on the queue");
            back.remove(pos);
        }
    }

    // The next invocation finishes them.
    let ids_back: Vec<MessageId> = ids.iter().filter(|id| !ran.contains(id)).copied().collect();
    let report = handler
        .handle(&queue, &inbound(&ids_back), far())
        .await
        .unwrap();
    assert_eq!((report.completed, report.put_back), (ids_back.len(), 0));
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(5),
    )
    .await;
}
