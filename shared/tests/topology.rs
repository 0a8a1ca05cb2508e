//! The broker topology against the real RabbitMQ: what one tenant queue costs (one work queue),
//! shared wait tiers that return every retry to its own work queue within its tier, the
//! delivery limit with no broker dead-letter queue, and an upgrade over queues declared by the
//! previous layout (per-queue `.dlq` and `.wait.<ms>` queues).

use std::time::{Duration, Instant};

use lapin::{
    options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use shared::{
    broker::{Broker, Outbound, QueueRef, wait_queue, work_queue},
    domain::{QueueName, TenantId},
};

fn url() -> String {
    std::env::var("RABBITMQ_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn management() -> String {
    std::env::var("RABBITMQ_MANAGEMENT_URL")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into())
}

fn queue(name: &str) -> QueueRef {
    QueueRef::new(TenantId::generate(), QueueName::parse(name).unwrap())
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn out<'a>(
    exchange: &'a str,
    queue: &'a str,
    id: &str,
    expiration_ms: Option<u64>,
) -> Outbound<'a> {
    Outbound {
        exchange,
        queue,
        message_id: id.to_string(),
        body: b"{}",
        headers: FieldTable::default(),
        expiration_ms,
    }
}

/// The queue's arguments as the management API reports them; `None` when it does not exist.
async fn arguments(vhost_queue: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let client = reqwest::Client::new();
    let encoded: String = url::form_urlencoded::byte_serialize(vhost_queue.as_bytes()).collect();
    let info: serde_json::Value = shared::broker::stats::management_get(
        &client,
        &management(),
        &format!("/api/queues/%2F/{encoded}"),
        None,
    )
    .await
    .ok()?;
    info["arguments"].as_object().cloned()
}

/// Takes one message off `queue` (acknowledged), waiting up to `within`; its id and when.
async fn next_on(broker: &Broker, queue: &str, within: Duration) -> Option<(String, Instant)> {
    let ch = broker.channel().await.unwrap();
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let id = m.properties.message_id().as_ref().unwrap().to_string();
            return Some((id, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn delete(broker: &Broker, names: &[String]) {
    let ch = broker.channel().await.unwrap();
    for n in names {
        let _ = ch
            .queue_delete(n.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

#[tokio::test]
async fn a_tenant_queue_is_one_quorum_queue_with_a_delivery_limit_and_no_dead_letter_queue() {
    let broker = Broker::new(url(), "topology-test");
    let q = queue("one");
    broker.ensure_queue(&q).await.unwrap();
    let work = work_queue(&q);
    let args = arguments(&work).await.expect("work queue declared");
    assert_eq!(args["x-queue-type"], "quorum");
    assert_eq!(args["x-delivery-limit"], 1000);
    assert!(!args.contains_key("x-dead-letter-exchange"), "{args:?}");
    assert!(arguments(&format!("{work}.dlq")).await.is_none());
    delete(&broker, &[work]).await;
    broker.close().await;
}

/// A message given back more often than `x-delivery-limit` (a consumer that crashes on it) is
/// dropped by the broker: no dead-letter queue holds it, and nothing else does. PostgreSQL
/// still does; the relay gives it a new copy (`api` tests,
/// `relay::a_queued_message_whose_copy_is_gone_gets_one_again`).
#[tokio::test]
async fn past_the_delivery_limit_the_broker_drops_its_copy() {
    let broker = Broker::new(url(), "topology-test");
    let q = queue("poison");
    broker.ensure_queue(&q).await.unwrap();
    let work = work_queue(&q);
    let r = broker
        .publish_confirmed(&[out("", &work, "poison-1", None)])
        .await;
    assert!(r[0].is_ok());
    let ch = broker.channel().await.unwrap();
    let mut deliveries = 0;
    while let Some(m) = ch
        .basic_get(work.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
    {
        deliveries += 1;
        m.reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
        assert!(deliveries <= 1100, "never dropped");
    }
    assert_eq!(
        deliveries, 1001,
        "the first delivery and the limit's 1000 more"
    );
    assert_eq!(broker.ready_count(&work).await.unwrap(), Some(0));
    delete(&broker, &[work]).await;
    broker.close().await;
}

/// One wait queue per tier for the whole broker. Two tenant queues park a retry on the same
/// tier: the first for the full tier, the second 100 ms later for 60% of it. Each comes back
/// on its own work queue. The second waits behind the first (messages expire at the head of a
/// queue only), so it is late by up to the tier less its own delay, and never later than the
/// tier after it was parked.
#[tokio::test]
async fn a_shared_tier_returns_each_retry_to_its_own_work_queue_within_the_tier() {
    let broker = Broker::new(url(), "topology-test");
    // A tier no other test uses.
    let tier = Duration::from_millis(1_537);
    let (a, b) = (queue("tier-a"), queue("tier-b"));
    broker.ensure_queue(&a).await.unwrap();
    broker.ensure_queue(&b).await.unwrap();
    let (wa, wb) = (work_queue(&a), work_queue(&b));
    let exchange = broker.ensure_wait_tier(tier).await.unwrap();
    assert_eq!(exchange, "msgsvc.retry.1537");
    let args = arguments(&wait_queue(tier)).await.expect("tier declared");
    assert_eq!(args["x-queue-type"], "classic");
    assert_eq!(args["x-message-ttl"], 1537);
    assert_eq!(args["x-dead-letter-exchange"], "");
    assert!(!args.contains_key("x-dead-letter-routing-key"), "{args:?}");

    let parked_a = Instant::now();
    let r = broker
        .publish_confirmed(&[out(&exchange, &wa, "retry-a", Some(1_537))])
        .await;
    assert!(r[0].is_ok());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Declared again by a second tenant queue: the same tier.
    assert_eq!(broker.ensure_wait_tier(tier).await.unwrap(), exchange);
    let parked_b = Instant::now();
    let r = broker
        .publish_confirmed(&[out(&exchange, &wb, "retry-b", Some(922))])
        .await;
    assert!(r[0].is_ok());

    let within = Duration::from_secs(5);
    let (got_a, back_a) = next_on(&broker, &wa, within).await.expect("a came back");
    let (got_b, back_b) = next_on(&broker, &wb, within).await.expect("b came back");
    assert_eq!((got_a.as_str(), got_b.as_str()), ("retry-a", "retry-b"));
    let (wait_a, wait_b) = (back_a - parked_a, back_b - parked_b);
    // 300 ms for polling and the broker's expiry timer.
    let slack = Duration::from_millis(300);
    assert!(
        wait_a >= tier && wait_a <= tier + slack,
        "a waited {wait_a:?}"
    );
    assert!(
        wait_b >= tier - Duration::from_millis(100) - Duration::from_millis(50),
        "b waited behind a: {wait_b:?}"
    );
    assert!(
        wait_b <= tier + slack,
        "b is never later than its tier: {wait_b:?}"
    );
    assert!(
        next_on(&broker, &wa, Duration::from_millis(200))
            .await
            .is_none()
    );
    delete(&broker, &[wa, wb]).await;
    broker.close().await;
}

/// A deployment of the previous layout: its work queue was declared with a dead-letter routing
/// key to `<work>.dlq`, and a retry waits on `<work>.wait.<ms>`. Declaring the work queue now
/// keeps it as it is (RabbitMQ refuses a re-declaration with other arguments), publishing to
/// it works, and the old wait queue still returns its message to the work queue.
#[tokio::test]
async fn an_upgrade_keeps_earlier_work_queues_and_their_waiting_retries() {
    let broker = Broker::new(url(), "topology-test");
    let q = queue("upgraded");
    let work = work_queue(&q);
    let (dlq, old_wait) = (format!("{work}.dlq"), format!("{work}.wait.700"));
    let ch = broker.channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut dlq_args = FieldTable::default();
    dlq_args.insert("x-queue-type".into(), text("quorum"));
    ch.queue_declare(dlq.as_str().into(), durable, dlq_args)
        .await
        .unwrap();
    let mut work_args = FieldTable::default();
    work_args.insert("x-queue-type".into(), text("quorum"));
    work_args.insert("x-delivery-limit".into(), AMQPValue::LongInt(1000));
    work_args.insert("x-dead-letter-exchange".into(), text(""));
    work_args.insert("x-dead-letter-routing-key".into(), text(&dlq));
    ch.queue_declare(work.as_str().into(), durable, work_args)
        .await
        .unwrap();
    let mut wait_args = FieldTable::default();
    wait_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(700));
    wait_args.insert("x-dead-letter-exchange".into(), text(""));
    wait_args.insert("x-dead-letter-routing-key".into(), text(&work));
    wait_args.insert("x-expires".into(), AMQPValue::LongLongInt(602_000));
    ch.queue_declare(old_wait.as_str().into(), durable, wait_args)
        .await
        .unwrap();
    let r = broker
        .publish_confirmed(&[out("", &old_wait, "waiting-before-upgrade", None)])
        .await;
    assert!(r[0].is_ok());

    // The new code declares the queue with other arguments: refused by the broker, kept.
    let fresh = Broker::new(url(), "topology-test-upgraded");
    fresh
        .ensure_queue(&q)
        .await
        .expect("an earlier work queue is kept");
    let args = arguments(&work).await.unwrap();
    assert_eq!(
        args["x-dead-letter-routing-key"],
        dlq.as_str(),
        "kept as it was"
    );
    let r = fresh
        .publish_confirmed(&[out("", &work, "published-after-upgrade", None)])
        .await;
    assert!(r[0].is_ok());
    let mut got = Vec::new();
    for _ in 0..2 {
        let (id, _) = next_on(&fresh, &work, Duration::from_secs(5))
            .await
            .expect("both messages reach the work queue");
        got.push(id);
    }
    got.sort();
    assert_eq!(got, ["published-after-upgrade", "waiting-before-upgrade"]);
    delete(&fresh, &[work, dlq, old_wait]).await;
    fresh.close().await;
    broker.close().await;
}
