//! Replay through the consumer: settled messages are delivered again as new attempts of the
//! same messages (the receiver sees the same `webhook-id`), by id and by a queue's time range
//! page by page, and a message replayed by two requests at once is replayed once.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use serde_json::json;
use shared::{
    config::WebhookConfig,
    delivery::Builtin,
    domain::{MessageId, MessageStatus, QueueName},
    services::replay::{ReplaySelector, replay},
};

use crate::helpers::{configure, context, publish, serve, start_event_source, tenant, wait_all};

/// Records the `webhook-id` of every delivery; fails bodies marked `doomed` while `failing`.
#[derive(Clone, Default)]
struct Receiver {
    ids: Arc<Mutex<Vec<String>>>,
    failing: Arc<AtomicBool>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers["webhook-id"].to_str().unwrap().to_string();
    r.ids.lock().unwrap().push(id);
    let doomed = String::from_utf8_lossy(&body).contains("doomed");
    if doomed && r.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_receiver(r: Receiver) -> String {
    let app = Router::new().route("/hook", post(hook)).with_state(r);
    format!("{}/hook", serve(app).await)
}

fn webhooks() -> Arc<Builtin> {
    Arc::new(
        Builtin::new(&WebhookConfig {
            timeout: Duration::from_secs(5),
            allow_private: true,
            allow_http: true,
            response_excerpt_bytes: 256,
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn replayed_messages_are_new_attempts_of_the_same_messages() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let receiver = Receiver::default();
    receiver.failing.store(true, Ordering::SeqCst);
    let url = start_receiver(receiver.clone()).await;
    configure(&ctx, t, "hooks", 2, 1, 100, Some(url)).await;
    let source = start_event_source(&ctx, webhooks(), vec![t]);

    let from = chrono::Utc::now();
    let fine = publish(&ctx, t, "hooks", json!({"n": 1})).await;
    let doomed = publish(&ctx, t, "hooks", json!({"n": 2, "doomed": true})).await;
    let others: Vec<MessageId> = {
        let mut v = Vec::new();
        for n in 3..6 {
            v.push(publish(&ctx, t, "hooks", json!({ "n": n })).await);
        }
        v
    };
    wait_all(
        &ctx,
        t,
        &[fine],
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    wait_all(
        &ctx,
        t,
        &others,
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    wait_all(
        &ctx,
        t,
        &[doomed],
        MessageStatus::DeadLettered,
        Duration::from_secs(20),
    )
    .await;
    let to = chrono::Utc::now();
    // Outside the range: published after `to`.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let later = publish(&ctx, t, "hooks", json!({"n": 9})).await;
    wait_all(
        &ctx,
        t,
        &[later],
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    receiver.failing.store(false, Ordering::SeqCst);
    let attempts_before = |id: MessageId| {
        let ctx = ctx.clone();
        async move {
            shared::db::attempts::list(&ctx.db, t, id)
                .await
                .unwrap()
                .len()
        }
    };
    let doomed_attempts = attempts_before(doomed).await;
    assert_eq!(doomed_attempts, 2, "the first attempt and one retry");

    // By id: a completed one, a dead letter, and one this tenant does not have.
    let unknown = MessageId::generate();
    let report = replay(&ctx, t, &ReplaySelector::Ids(vec![fine, doomed, unknown]))
        .await
        .unwrap();
    assert_eq!(report.replayed, 2);
    assert_eq!(
        report.by_status,
        [
            ("completed".to_string(), 1),
            ("dead_lettered".to_string(), 1)
        ]
        .into()
    );
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(
        (report.skipped[0].id, report.skipped[0].reason.as_str()),
        (unknown, "not_found")
    );
    wait_all(
        &ctx,
        t,
        &[fine, doomed],
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    let attempts = shared::db::attempts::list(&ctx.db, t, doomed)
        .await
        .unwrap();
    let numbers: Vec<i32> = attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(
        numbers,
        [1, 2, 3],
        "the history kept, the replay its next attempt"
    );
    assert_eq!(attempts[2].outcome.as_deref(), Some("completed"));
    let seen: HashMap<String, usize> =
        receiver
            .ids
            .lock()
            .unwrap()
            .iter()
            .fold(HashMap::new(), |mut m, id| {
                *m.entry(id.clone()).or_default() += 1;
                m
            });
    assert_eq!(seen[&fine.to_string()], 2, "the same webhook-id twice");
    assert_eq!(seen[&doomed.to_string()], 3);

    // By range, two at a time: the five messages published in [from, to), not the later one.
    let queue = QueueName::parse("hooks").unwrap();
    let page = |after| ReplaySelector::Range {
        queue: queue.clone(),
        from,
        to,
        statuses: vec!["completed"],
        after,
        limit: 2,
    };
    let mut replayed = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let report = replay(&ctx, t, &page(after)).await.unwrap();
        replayed.extend(report.message_ids.iter().copied());
        after = report.next_cursor;
        if after.is_none() {
            break;
        }
    }
    let mut expected = vec![fine, doomed];
    expected.extend(&others);
    expected.sort_by_key(|m| m.0);
    assert_eq!(
        replayed, expected,
        "each once, oldest first, none outside the range"
    );
    wait_all(
        &ctx,
        t,
        &expected,
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        attempts_before(later).await,
        1,
        "the later message was not replayed"
    );

    // Two replays of the same message at once: one takes it, the other skips it.
    let one = ReplaySelector::Ids(vec![fine]);
    let (a, b) = tokio::join!(replay(&ctx, t, &one), replay(&ctx, t, &one));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.replayed + b.replayed, 1, "{a:?} {b:?}");
    let skipped = if a.replayed == 0 {
        &a.skipped
    } else {
        &b.skipped
    };
    assert_ne!(
        skipped[0].reason, "not_found",
        "skipped as no longer settled"
    );
    wait_all(
        &ctx,
        t,
        &[fine],
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    source.stop().await;
}
