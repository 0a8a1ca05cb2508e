//! The outbox relay and the publish path against the real PostgreSQL and RabbitMQ: how many
//! copies of a message reach the broker, and what a publish answers when a step after storing
//! fails.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::outbox::relay;

use crate::helpers::{TestApp, spawn_with};

/// How many copies of message `id` the queue holds now (taking them all off).
async fn copies(app: &TestApp, tenant: &str, queue: &str, id: &str) -> usize {
    let mut n = 0;
    while let Some(m) = app.broker_get(tenant, queue).await {
        if m.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str())
            == Some(id)
        {
            n += 1;
        }
    }
    n
}

/// Puts the message in `retrying`, due a minute ago, at attempt `n` (as a consumer that
/// claimed it `n` times and parked it would), with its last change a minute ago.
async fn retrying_overdue(app: &TestApp, id: &str, n: i32) {
    let client = app.ctx.db.get().await.unwrap();
    let changed = client
        .execute(
            "UPDATE messages SET status = 'retrying', attempts = $2, total_attempts = $2,
                 next_attempt_at = now() - interval '1 minute',
                 updated_at = now() - interval '1 minute'
             WHERE id = $1",
            &[&id.parse::<uuid::Uuid>().unwrap(), &n],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
}

async fn sweep(app: &TestApp, times: usize) {
    for _ in 0..times {
        relay::run_once(&app.ctx).await.unwrap();
    }
}

async fn publish_drained(app: &TestApp, tenant: &str, queue: &str) -> String {
    let r = app.publish(tenant, queue, json!({"q": queue})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        copies(app, tenant, queue, &id).await,
        1,
        "the publish's own copy"
    );
    id
}

/// Issue #15, defect 1: a message whose copy may be lost gets one new copy per attempt, not
/// one per sweep; none while its queue is paused or its tenant deactivated (their copies wait
/// on the broker). Before the fix every sweep added a copy, forever.
#[tokio::test]
async fn the_relay_adds_one_copy_per_attempt_and_none_where_nothing_consumes() {
    let app = spawn_with(|c| c.relay.stale_after = Duration::ZERO).await;
    let tenant = app.create_tenant().await;
    let live = publish_drained(&app, &tenant, "live").await;
    let paused = publish_drained(&app, &tenant, "paused").await;
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{tenant}/consumers/paused/config"),
            Some(&app.admin),
            Some(json!({"workers": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    retrying_overdue(&app, &live, 1).await;
    retrying_overdue(&app, &paused, 1).await;
    sweep(&app, 3).await;
    assert_eq!(copies(&app, &tenant, "live", &live).await, 1);
    assert_eq!(copies(&app, &tenant, "paused", &paused).await, 0);

    // A consumer claimed it again and it is overdue again: one more copy, for that attempt.
    retrying_overdue(&app, &live, 2).await;
    sweep(&app, 3).await;
    assert_eq!(copies(&app, &tenant, "live", &live).await, 1);
    let stored = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages/{live}"),
            &app.admin,
        )
        .await;
    assert_eq!(
        stored.body["status"], "retrying",
        "the relay changes no status"
    );

    // A deactivated tenant's messages get no copies either.
    let gone = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{tenant}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    retrying_overdue(&app, &live, 3).await;
    sweep(&app, 2).await;
    assert_eq!(copies(&app, &tenant, "live", &live).await, 0);
}

/// Issue #15, defect 4: once a message is stored, a fault in a later step (here the database
/// refusing to mark it `queued` after the broker confirmed it) answers 202 with what is
/// stored, `pending`, never an error a client would retry into a duplicate. The relay
/// settles it later.
#[tokio::test]
async fn a_fault_after_storing_answers_what_was_stored() {
    let app = spawn_with(|c| c.relay.stale_after = Duration::ZERO).await;
    let tenant = app.create_tenant().await;
    let suffix = tenant.replace('-', "");
    let client = app.ctx.db.get().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE FUNCTION refuse_queued_{suffix}() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
             CREATE TRIGGER refuse_queued_{suffix} BEFORE UPDATE ON messages FOR EACH ROW
                 WHEN (NEW.tenant_id = '{tenant}' AND OLD.status = 'pending'
                       AND NEW.status = 'queued')
                 EXECUTE FUNCTION refuse_queued_{suffix}();"
        ))
        .await
        .unwrap();
    let single = app.publish(&tenant, "orders", json!({"n": 1})).await;
    let batch = app
        .post(
            &format!("/api/v1/tenants/{tenant}/messages/batch"),
            &app.admin,
            json!({"messages": [{"queue_name": "orders", "message_body": 2}]}),
        )
        .await;
    client
        .batch_execute(&format!(
            "DROP TRIGGER refuse_queued_{suffix} ON messages;
             DROP FUNCTION refuse_queued_{suffix}();"
        ))
        .await
        .unwrap();
    assert_eq!(single.status, StatusCode::ACCEPTED, "{}", single.body);
    assert_eq!(single.body["status"], "pending");
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.body);
    assert_eq!(batch.body["results"][0]["status"], "pending");
    let ids = [
        single.body["id"].as_str().unwrap().to_string(),
        batch.body["results"][0]["id"].as_str().unwrap().to_string(),
    ];
    for id in &ids {
        let stored = app
            .get(
                &format!("/api/v1/tenants/{tenant}/messages/{id}"),
                &app.admin,
            )
            .await;
        assert_eq!(stored.body["status"], "pending");
    }
    // The relay settles them: queued, each on the broker (the publish's copy and the relay's).
    sweep(&app, 1).await;
    for id in &ids {
        let stored = app
            .get(
                &format!("/api/v1/tenants/{tenant}/messages/{id}"),
                &app.admin,
            )
            .await;
        assert_eq!(stored.body["status"], "queued");
    }
    let mut on_broker = Vec::new();
    while let Some(m) = app.broker_get(&tenant, "orders").await {
        on_broker.push(
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        assert_eq!(
            on_broker.iter().filter(|m| *m == id).count(),
            2,
            "{on_broker:?}"
        );
    }
}

/// Issue #15, defect 5: repeating a publish byte for byte with its idempotency key replays
/// it, whatever its numbers look like (the stored `jsonb` prints `1e2` as `100`).
#[tokio::test]
async fn an_identical_retry_replays_whatever_its_numbers() {
    let app = spawn_with(|_| {}).await;
    let tenant = app.create_tenant().await;
    let body = r#"{"queue_name": "orders", "message_body": {"a": 1e2, "b": -0.0, "c": 1.0,
        "d": 1e20, "e": 123456789012345678901234567890, "f": 0.1e1, "g": 5e-324,
        "h": 1.7976931348623157e308, "i": [1E+2, 10.50, -0], "j": 18446744073709551615}}"#;
    let path = format!("{}/api/v1/tenants/{tenant}/messages", app.base);
    let send = || async {
        let resp = app
            .http
            .post(&path)
            .bearer_auth(&app.admin)
            .header("content-type", "application/json")
            .header("idempotency-key", "numbers-1")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json::<Value>().await.unwrap())
    };
    let (first_status, first) = send().await;
    assert_eq!(first_status, StatusCode::ACCEPTED, "{first}");
    let (again_status, again) = send().await;
    assert_eq!(again_status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["idempotent_replay"], true);
}

/// Messages ready on the tenant queue's work queue, left in place.
async fn ready(app: &TestApp, tenant: &str, queue: &str) -> u32 {
    let q = shared::broker::QueueRef::new(
        tenant.parse().unwrap(),
        shared::domain::QueueName::parse(queue).unwrap(),
    );
    let name = shared::broker::work_queue(&q);
    app.ctx
        .brokers
        .home()
        .broker
        .ready_count(&name)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// Makes the message look `queued` for ten minutes (its broker copy long overdue).
async fn queued_long_ago(app: &TestApp, id: &str) {
    let client = app.ctx.db.get().await.unwrap();
    let changed = client
        .execute(
            "UPDATE messages SET created_at = now() - interval '10 minutes',
                 queued_at = now() - interval '10 minutes',
                 updated_at = now() - interval '10 minutes'
             WHERE id = $1 AND status = 'queued'",
            &[&id.parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
}

/// Issue #15, defect 3: a `queued` message whose broker copy is gone (the broker
/// dead-lettered it on its delivery limit, or lost it) gets a new one once its work queue
/// holds nothing ready, once per attempt; a queue that still holds messages is merely backed
/// up and gets none, and neither does a paused one. Before the fix such a message stayed
/// `queued` forever.
#[tokio::test]
async fn a_queued_message_whose_copy_is_gone_gets_one_again() {
    let app = spawn_with(|c| c.relay.lost_after = Duration::from_secs(60)).await;
    let tenant = app.create_tenant().await;
    // Its copy taken off the broker: lost.
    let lost = publish_drained(&app, &tenant, "lost").await;
    queued_long_ago(&app, &lost).await;
    // An old message on a queue that still holds another one: backed up, not lost.
    let r = app.publish(&tenant, "busy", json!(1)).await;
    let old = r.body["id"].as_str().unwrap().to_string();
    queued_long_ago(&app, &old).await;
    // Lost, but on a paused queue: its consumer would not take it.
    let paused = publish_drained(&app, &tenant, "paused").await;
    queued_long_ago(&app, &paused).await;
    app.call(
        Method::PUT,
        &format!("/api/v1/tenants/{tenant}/consumers/paused/config"),
        Some(&app.admin),
        Some(json!({"workers": 0})),
    )
    .await;

    sweep(&app, 3).await;
    // Counted in place first: taking copies off a queue would make it look lost to the
    // relays of tests running alongside.
    assert_eq!(ready(&app, &tenant, "busy").await, 1, "only its own copy");
    assert_eq!(ready(&app, &tenant, "paused").await, 0);
    assert_eq!(copies(&app, &tenant, "lost", &lost).await, 1);
    let stored = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages/{lost}"),
            &app.admin,
        )
        .await;
    assert_eq!(stored.body["status"], "queued");
    // Lost again before any consumer claimed it: no more copies for this attempt.
    sweep(&app, 2).await;
    assert_eq!(copies(&app, &tenant, "lost", &lost).await, 0);
}

/// Issue #15, defect 2: while the broker stops answering (a resource alarm blocks publishers
/// and confirms; here a proxy that passes no byte), the relay holds no row lock and no open
/// transaction, so claims and publishes are never blocked behind it, and its sweep ends within
/// `RELAY_PUBLISH_TIMEOUT`. Before the fix it held `FOR UPDATE` on its rows inside a
/// transaction while it waited up to 10 s per confirm.
#[tokio::test]
async fn a_broker_that_stops_answering_holds_no_row_locks() {
    let proxy = shared::testkit::TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let app = spawn_with(|c| {
        c.rabbitmq_url = url;
        c.relay.stale_after = Duration::ZERO;
        c.relay.publish_timeout = Duration::from_secs(3);
    })
    .await;
    let tenant = app.create_tenant().await;
    let id = publish_drained(&app, &tenant, "stalled").await;
    let client = app.ctx.db.get().await.unwrap();
    client
        .execute(
            "UPDATE messages SET status = 'pending', updated_at = now() - interval '1 minute'
             WHERE id = $1",
            &[&id.parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap();

    proxy.freeze();
    let ctx = app.ctx.clone();
    let sweep = tokio::spawn(async move { relay::run_once(&ctx).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!sweep.is_finished(), "the sweep is waiting on the broker");
    // The row is free: another transaction locks it at once.
    let mut other = app.ctx.db.get().await.unwrap();
    let tx = other.transaction().await.unwrap();
    let locked = tx
        .query(
            "SELECT id FROM messages WHERE id = $1 FOR UPDATE NOWAIT",
            &[&id.parse::<uuid::Uuid>().unwrap()],
        )
        .await;
    assert!(locked.is_ok(), "the relay holds the row: {locked:?}");
    tx.rollback().await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), sweep)
        .await
        .expect("the sweep ends within its publish timeout")
        .unwrap()
        .unwrap();
    assert_eq!(report.republished, 0);
    assert!(report.failed >= 1, "{report:?}");

    // Once the broker answers again, the next sweep settles the message.
    proxy.restore();
    for _ in 0..40 {
        sweep_once_quietly(&app).await;
        let stored = app
            .get(
                &format!("/api/v1/tenants/{tenant}/messages/{id}"),
                &app.admin,
            )
            .await;
        if stored.body["status"] == "queued" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the message was not relayed after the broker came back");
}

/// A sweep whose errors (the broker reconnecting) are for the next one to retry.
async fn sweep_once_quietly(app: &TestApp) {
    let _ = relay::run_once(&app.ctx).await;
}
