//! Ordered delivery per key (issue #18, item 1): messages of one `ordering_key` in one queue
//! run one at a time in publish order, a retrying one holding back the rest of its key, while
//! other keys run in parallel; across a consumer killed mid-way; and what a dead letter does to
//! its key under `on_dead_letter`. Order is read from the attempts' recorded start and finish
//! times, never from timing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::post};
use serde_json::{Value, json};
use shared::{
    AppContext,
    db::attempts::Attempt,
    delivery::{Outcome, Processor, Task},
    domain::{MessageId, MessageStatus, OnDeadLetter, QueueName, TenantId},
    services::{
        dead_letters::{RedriveSelector, redrive},
        messages::{self, PublishItem},
    },
};

use crate::helpers::{
    configure, context, message, spawn_consumer, start_event_source, tenant, wait_all,
};

/// Publishes `per_key` messages for each of `keys` keys, interleaved (k0 n0, k1 n0, ..., k0
/// n1, ...), in one batch; returns the ids per key in publish order.
async fn publish_keyed(
    ctx: &AppContext,
    t: TenantId,
    queue: &str,
    keys: usize,
    per_key: usize,
) -> BTreeMap<usize, Vec<MessageId>> {
    let mut items = Vec::new();
    for n in 0..per_key {
        for k in 0..keys {
            items.push(PublishItem {
                queue_name: queue.into(),
                message_body: json!({"key": k, "n": n}),
                ordering_key: Some(format!("k{k}")),
                ..Default::default()
            });
        }
    }
    let accepted = messages::publish_batch(ctx, t, items).await.unwrap();
    let mut by_key: BTreeMap<usize, Vec<MessageId>> = BTreeMap::new();
    for (i, a) in accepted.into_iter().enumerate() {
        by_key.entry(i % keys).or_default().push(a.unwrap().id);
    }
    by_key
}

/// Every attempt of the key's messages, in publish order of the messages: each attempt must
/// have finished before the next one (of the same or a later message) started, and the
/// messages' attempts come message after message.
async fn assert_one_at_a_time_in_order(ctx: &AppContext, t: TenantId, ids: &[MessageId]) {
    let mut all: Vec<(usize, Attempt)> = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        for a in shared::db::attempts::list(&ctx.db, t, *id).await.unwrap() {
            all.push((i, a));
        }
    }
    all.sort_by_key(|(_, a)| a.started_at);
    for pair in all.windows(2) {
        let (i, a) = &pair[0];
        let (j, b) = &pair[1];
        assert!(i <= j, "message {j} of the key started before message {i}");
        let finished = a.finished_at.expect("every attempt finished");
        assert!(
            finished <= b.started_at,
            "message {i}'s attempt {} ran until {finished}, after message {j}'s attempt {} \
             started at {}",
            a.attempt,
            b.attempt,
            b.started_at
        );
    }
}

/// Fails the first attempt of every message whose `n` is odd; records, per key, how many of
/// its messages run at once (at most), and the most messages running at once overall.
#[derive(Default)]
struct Recorder {
    running: Mutex<HashMap<u64, usize>>,
    per_key_peak: AtomicUsize,
    now: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait::async_trait]
impl Processor for Recorder {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        let body: Value = serde_json::from_slice(job.body).unwrap();
        let key = body["key"].as_u64().unwrap();
        let n = body["n"].as_u64().unwrap();
        {
            let mut running = self.running.lock().unwrap();
            let of_key = running.entry(key).or_default();
            *of_key += 1;
            self.per_key_peak.fetch_max(*of_key, Ordering::SeqCst);
        }
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // Long enough that messages of a key running at once would overlap.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        *self.running.lock().unwrap().get_mut(&key).unwrap() -= 1;
        if n % 2 == 1 && job.attempt == 1 {
            Outcome::retry("first attempts of odd messages fail")
        } else {
            Outcome::Completed
        }
    }
}

#[tokio::test]
async fn each_key_runs_one_at_a_time_in_order_with_retries_while_keys_run_in_parallel() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    configure(&ctx, t, "orders", 4, 3, 50, None).await;
    let by_key = publish_keyed(&ctx, t, "orders", 4, 6).await;
    let recorder = Arc::new(Recorder::default());
    let source = start_event_source(&ctx, recorder.clone(), vec![t]);
    let all: Vec<MessageId> = by_key.values().flatten().copied().collect();
    wait_all(
        &ctx,
        t,
        &all,
        MessageStatus::Completed,
        Duration::from_secs(90),
    )
    .await;
    source.stop().await;

    for ids in by_key.values() {
        assert_one_at_a_time_in_order(&ctx, t, ids).await;
        // Odd messages retried once: the retry held the rest of the key back.
        for (n, id) in ids.iter().enumerate() {
            let attempts = if n % 2 == 1 { 2 } else { 1 };
            assert_eq!(message(&ctx, t, *id).await.attempts, attempts, "n={n}");
        }
    }
    assert_eq!(recorder.per_key_peak.load(Ordering::SeqCst), 1);
    assert!(
        recorder.peak.load(Ordering::SeqCst) > 1,
        "different keys ran in parallel"
    );
}

type Received = Arc<Mutex<Vec<(u64, u64)>>>;

/// A webhook endpoint recording `(key, n)` of each delivery, slow enough to be killed mid-way.
async fn receiver(seen: Received) -> String {
    async fn hook(State(seen): State<Received>, Json(body): Json<Value>) -> &'static str {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let key = body["key"].as_u64().unwrap();
        let n = body["n"].as_u64().unwrap();
        seen.lock().unwrap().push((key, n));
        "ok"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(hook)).with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A consumer process killed mid-way (its attempts in flight abandoned, its prefetched
/// deliveries returned by the broker) and a new one started: each key still runs one message
/// at a time, in order, with the abandoned attempt's message taken over first.
#[tokio::test]
async fn order_holds_across_a_consumer_killed_mid_way() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let seen: Received = Arc::default();
    let url = receiver(seen.clone()).await;
    configure(&ctx, t, "orders", 3, 3, 100, Some(url)).await;
    let by_key = publish_keyed(&ctx, t, "orders", 3, 6).await;

    let mut first = spawn_consumer(&ctx.config.database_url, &t.to_string());
    // Generous: the binary starts slowly on a loaded machine; it is killed as soon as it is
    // part-way through.
    for _ in 0..2400 {
        if seen.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let before = seen.lock().unwrap().len();
    assert!(
        (4..18).contains(&before),
        "killed mid-way ({before} delivered)"
    );

    let mut second = spawn_consumer(&ctx.config.database_url, &t.to_string());
    let all: Vec<MessageId> = by_key.values().flatten().copied().collect();
    wait_all(
        &ctx,
        t,
        &all,
        MessageStatus::Completed,
        Duration::from_secs(120),
    )
    .await;
    second.start_kill().unwrap();

    for ids in by_key.values() {
        assert_one_at_a_time_in_order(&ctx, t, ids).await;
    }
    // What the endpoint received, per key, never went backwards but to repeat a delivery
    // whose attempt was abandoned by the kill (at least once).
    let seen = seen.lock().unwrap().clone();
    for k in 0..3u64 {
        let ns: Vec<u64> = seen
            .iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, n)| *n)
            .collect();
        for pair in ns.windows(2) {
            assert!(pair[1] >= pair[0], "key {k} received out of order: {ns:?}");
        }
        let mut distinct = ns.clone();
        distinct.dedup();
        assert_eq!(distinct, (0..6).collect::<Vec<u64>>(), "key {k}: {ns:?}");
    }
}

/// Fails every attempt of `n == 0` until `heal` is set; the rest complete.
#[derive(Default)]
struct FirstFails {
    heal: AtomicBool,
}

#[async_trait::async_trait]
impl Processor for FirstFails {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        let body: Value = serde_json::from_slice(job.body).unwrap();
        if body["n"] == 0 && !self.heal.load(Ordering::SeqCst) {
            Outcome::retry("the first message fails")
        } else {
            Outcome::Completed
        }
    }
}

async fn set_on_dead_letter(ctx: &AppContext, t: TenantId, queue: &str, v: OnDeadLetter) {
    let mut update = shared::domain::ConsumerConfigUpdate::parse(
        queue,
        2,
        Some(1),
        Some(50),
        Some(true),
        None,
        &ctx.config.consumer,
    )
    .unwrap();
    update.on_dead_letter = Some(v);
    let stored = shared::services::consumers::configure(ctx, t, &update)
        .await
        .unwrap();
    assert_eq!(stored.on_dead_letter, v);
}

#[tokio::test]
async fn with_on_dead_letter_continue_the_key_goes_on_after_a_dead_letter() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    set_on_dead_letter(&ctx, t, "orders", OnDeadLetter::Continue).await;
    let ids = publish_keyed(&ctx, t, "orders", 1, 3)
        .await
        .remove(&0)
        .unwrap();
    let source = start_event_source(&ctx, Arc::new(FirstFails::default()), vec![t]);
    wait_all(
        &ctx,
        t,
        &ids[..1],
        MessageStatus::DeadLettered,
        Duration::from_secs(30),
    )
    .await;
    wait_all(
        &ctx,
        t,
        &ids[1..],
        MessageStatus::Completed,
        Duration::from_secs(30),
    )
    .await;
    source.stop().await;
    assert_one_at_a_time_in_order(&ctx, t, &ids).await;
}

#[tokio::test]
async fn with_on_dead_letter_block_the_key_waits_for_its_dead_letter_to_be_redriven() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    set_on_dead_letter(&ctx, t, "orders", OnDeadLetter::Block).await;
    let ids = publish_keyed(&ctx, t, "orders", 1, 3)
        .await
        .remove(&0)
        .unwrap();
    let processor = Arc::new(FirstFails::default());
    let source = start_event_source(&ctx, processor.clone(), vec![t]);
    wait_all(
        &ctx,
        t,
        &ids[..1],
        MessageStatus::DeadLettered,
        Duration::from_secs(30),
    )
    .await;
    // The next message was delivered and refused (put aside behind the dead letter) after it
    // was dead-lettered: it holds the key back.
    let client = ctx.db.get().await.unwrap();
    let mut refused_after_dead_letter = false;
    for _ in 0..600 {
        let row = client
            .query_one(
                "SELECT n.deferred_at > d.dead_lettered_at FROM messages n, messages d
                 WHERE n.id = $1 AND d.id = $2",
                &[&ids[1].0, &ids[0].0],
            )
            .await
            .unwrap();
        if row.get::<_, Option<bool>>(0) == Some(true) {
            refused_after_dead_letter = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        refused_after_dead_letter,
        "the next message was looked at again"
    );
    for id in &ids[1..] {
        let m = message(&ctx, t, *id).await;
        assert_eq!((m.status, m.attempts), (MessageStatus::Queued, 0), "{id}");
    }

    processor.heal.store(true, Ordering::SeqCst);
    let selector = RedriveSelector {
        queue_name: Some(QueueName::parse("orders").unwrap()),
        ids: None,
    };
    assert_eq!(redrive(&ctx, t, &selector).await.unwrap().redriven, 1);
    // The redriven message completes, and the put-aside ones follow at once (not after their
    // 30 s recheck: this test's limit is below two of those).
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(50),
    )
    .await;
    source.stop().await;
    assert_one_at_a_time_in_order(&ctx, t, &ids).await;
}
