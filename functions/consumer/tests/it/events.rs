//! The handler accepts the event shape Amazon MQ sends, and processes a message once however
//! often it is delivered.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use consumer::rmq::{RmqEvent, handle_event};
use serde_json::{Value, json};
use shared::{
    broker::{QueueRef, work_queue},
    delivery::BatchHandler,
    domain::{MessageStatus, QueueName},
};

use crate::helpers::{FailTimes, context, message, publish, tenant, wait_all};

/// A deadline as far off as the longest Lambda timeout.
fn deadline() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(900)
}

fn fixture() -> Value {
    let raw = include_str!("../fixtures/aws-rmq-event.json");
    serde_json::from_str(raw).unwrap()
}

/// The fixture, re-addressed to one of our queues and messages.
fn fixture_for(queue: &QueueRef, message_id: &str) -> RmqEvent {
    let mut event = fixture();
    let mut messages = event["rmqMessagesByQueue"]["test::/"].take();
    messages[0]["basicProperties"]["messageId"] = json!(message_id);
    event["rmqMessagesByQueue"] = json!({ format!("{}::/", work_queue(queue)): messages });
    serde_json::from_value(event).unwrap()
}

#[tokio::test]
async fn the_fixture_event_parses_and_foreign_queues_are_ignored() {
    let ctx = context().await;
    let processor = Arc::new(FailTimes::default());
    let handler = BatchHandler::new(ctx, processor.clone());
    let event = RmqEvent::decode(fixture());
    let report = handle_event(&handler, &event, deadline()).await.unwrap();
    assert_eq!(report.queues.len(), 1);
    assert_eq!(report.queues[0].report.unknown, 1);
    assert_eq!(report.queues[0].unmapped.not_a_tenant_queue, 1);
    assert_eq!(processor.calls.load(Ordering::SeqCst), 0);
}

/// AWS's own capture (https://github.com/aws/aws-lambda-dotnet/pull/1565): a message published
/// without properties arrives with `null` priority, timestamp and message id. It decodes, and
/// its queue (not ours) is acknowledged as unmapped.
#[tokio::test]
async fn the_real_capture_with_null_fields_decodes() {
    let raw = include_str!("../fixtures/aws-rmq-capture-null-fields.json");
    let event = RmqEvent::decode(serde_json::from_str(raw).unwrap());
    let m = &event.messages_by_queue["TestQueue::/"][0];
    let p = &m.basic_properties;
    assert_eq!(
        (p.priority, p.delivery_mode, p.body_size),
        (None, Some(1), Some(11))
    );
    assert_eq!(
        (p.message_id.as_deref(), p.timestamp.as_deref()),
        (None, None)
    );
    assert!(m.redelivered);
    assert_eq!(m.data.as_deref(), Some("SGVsbG8gV29ybGQ=")); // "Hello World"

    let handler = BatchHandler::new(context().await, Arc::new(FailTimes::default()));
    let report = handle_event(&handler, &event, deadline()).await.unwrap();
    assert_eq!(report.queues[0].queue, "TestQueue");
    assert_eq!(report.queues[0].unmapped.not_a_tenant_queue, 1);
}

/// Deliveries that are none of ours share a batch with ours: ours complete, the others are
/// counted by reason, recorded for the status API, and the batch succeeds (so it is acked).
#[tokio::test]
async fn foreign_deliveries_are_counted_by_reason_and_shown_by_the_status_api() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let id = publish(&ctx, t, "mixed", json!({"n": 1})).await;
    let queue = QueueRef::new(t, QueueName::parse("mixed").unwrap());
    let mut event = fixture_for(&queue, &id.to_string());
    let ours = event.messages_by_queue.values().next().unwrap()[0].clone();
    let foreign = |message_id: Option<&str>| {
        let mut m = ours.clone();
        m.basic_properties.message_id = message_id.map(str::to_string);
        m.data = Some("eyJvcmRlciI6IDQyfQ==".into()); // {"order": 42}: another publisher's body
        m
    };
    let batch = event.messages_by_queue.values_mut().next().unwrap();
    batch.push(foreign(None));
    batch.push(foreign(Some("order-42")));
    batch.push(foreign(Some(&uuid::Uuid::new_v4().to_string())));
    batch.push(foreign(Some(&uuid::Uuid::new_v4().to_string())));

    let handler = BatchHandler::new(ctx.clone(), Arc::new(FailTimes::default()));
    let report = handle_event(&handler, &event, deadline()).await.unwrap();
    let q = &report.queues[0];
    assert_eq!((q.report.completed, q.report.unknown), (1, 4));
    assert_eq!(
        q.unmapped,
        consumer::rmq::Unmapped {
            no_message_id: 1,
            invalid_message_id: 1,
            unknown_message: 2,
            not_a_tenant_queue: 0,
        }
    );
    assert_eq!(message(&ctx, t, id).await.status, MessageStatus::Completed);

    let status = shared::services::consumers::status(&ctx, Some(t))
        .await
        .unwrap();
    let mixed = status.iter().find(|s| s.queue_name == "mixed").unwrap();
    assert_eq!(mixed.unmapped.count, 4);
    assert_eq!(
        mixed.unmapped.last_reason.as_deref(),
        Some("unknown_message")
    );
    let seen = mixed.unmapped.last_seen_at.expect("last seen");
    assert!((chrono::Utc::now() - seen).num_seconds() < 60);

    // A second batch adds to the count; a batch of ours only leaves it alone.
    let only_foreign = {
        let mut e = event.clone();
        for m in e.messages_by_queue.values_mut() {
            m.truncate(2);
            m.remove(0);
        }
        e
    };
    handle_event(&handler, &only_foreign, deadline())
        .await
        .unwrap();
    let id2 = publish(&ctx, t, "mixed", json!({"n": 2})).await;
    handle_event(&handler, &fixture_for(&queue, &id2.to_string()), deadline())
        .await
        .unwrap();
    let status = shared::services::consumers::status(&ctx, Some(t))
        .await
        .unwrap();
    let mixed = status.iter().find(|s| s.queue_name == "mixed").unwrap();
    assert_eq!(mixed.unmapped.count, 5);
    assert_eq!(mixed.unmapped.last_reason.as_deref(), Some("no_message_id"));
    // Another tenant's status does not see them.
    let other = tenant(&ctx).await;
    publish(&ctx, other, "mixed", json!(1)).await;
    let status = shared::services::consumers::status(&ctx, Some(other))
        .await
        .unwrap();
    assert_eq!(
        status
            .iter()
            .find(|s| s.queue_name == "mixed")
            .unwrap()
            .unmapped
            .count,
        0
    );
}

#[tokio::test]
async fn a_message_delivered_twice_completes_once() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let id = publish(&ctx, t, "orders", json!({"n": 1})).await;
    let queue = QueueRef::new(t, QueueName::parse("orders").unwrap());
    let event = fixture_for(&queue, &id.to_string());
    let processor = Arc::new(FailTimes::default());
    let handler = BatchHandler::new(ctx.clone(), processor.clone());

    let first = handle_event(&handler, &event, deadline()).await.unwrap();
    assert_eq!(first.queues[0].report.completed, 1);
    let second = handle_event(&handler, &event, deadline()).await.unwrap();
    assert_eq!(second.queues[0].report.completed, 0);
    assert_eq!(second.queues[0].report.duplicates, 1);
    // Also twice within one batch.
    let mut doubled = event.clone();
    for msgs in doubled.messages_by_queue.values_mut() {
        let copy = msgs[0].clone();
        msgs.push(copy);
    }
    let third = handle_event(&handler, &doubled, deadline()).await.unwrap();
    assert_eq!(third.queues[0].report.duplicates, 2);

    assert_eq!(
        processor.calls.load(Ordering::SeqCst),
        1,
        "processed exactly once"
    );
    let m = message(&ctx, t, id).await;
    assert_eq!((m.status, m.attempts), (MessageStatus::Completed, 1));
    let attempts = shared::db::attempts::list(&ctx.db, t, id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    wait_all(
        &ctx,
        t,
        &[id],
        MessageStatus::Completed,
        Duration::from_secs(1),
    )
    .await;
}

/// Publishing marks messages queued while the consumer claims the very same rows; the two must
/// never deadlock or fail each other.
#[tokio::test]
async fn publishing_while_the_consumer_claims_the_same_messages_never_fails() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    crate::helpers::configure(&ctx, t, "race", 10, 0, 100, None).await;
    let source = crate::helpers::start_event_source(&ctx, Arc::new(FailTimes::default()), vec![t]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.extend(crate::helpers::publish_many(&ctx, t, "race", 100).await);
    }
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(60),
    )
    .await;
    source.stop().await;
}
