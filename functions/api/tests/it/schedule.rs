//! Delayed delivery and ordering keys through the API (issue #18, items 1 and 2): what a
//! publish with `deliver_after`/`deliver_at`/`ordering_key` stores and answers, cancelling,
//! the rules and their codes, and a delayed message carried across a broker outage by the
//! relay of a fresh context (as a restarted process would).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::{outbox::relay, testkit::TcpProxy};

use crate::helpers::{TestApp, spawn_app, spawn_with};

async fn publish(app: &TestApp, tenant: &str, body: Value) -> crate::helpers::Resp {
    app.post(
        &format!("/api/v1/tenants/{tenant}/messages"),
        &app.admin,
        body,
    )
    .await
}

async fn show(app: &TestApp, tenant: &str, id: &str) -> Value {
    let r = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages/{id}"),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

#[tokio::test]
async fn a_delayed_message_is_scheduled_off_the_broker_and_cancellable() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let r = publish(
        &app,
        &tenant,
        json!({"queue_name": "later", "message_body": {"a": 1}, "deliver_after": "15m",
               "ordering_key": "customer-7"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "scheduled");
    let id = r.body["id"].as_str().unwrap().to_string();
    let deliver_at: chrono::DateTime<chrono::Utc> =
        r.body["deliver_at"].as_str().unwrap().parse().unwrap();
    assert!(deliver_at > chrono::Utc::now() + chrono::Duration::minutes(14));

    let m = show(&app, &tenant, &id).await;
    assert_eq!(m["status"], "scheduled");
    assert_eq!(m["ordering_key"], "customer-7");
    assert_eq!(
        m["deliver_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        deliver_at
    );
    // Nothing on the broker, and a relay sweep does not release it before it is due.
    assert!(app.broker_get(&tenant, "later").await.is_none());
    relay::run_once(&app.ctx).await.unwrap();
    assert_eq!(show(&app, &tenant, &id).await["status"], "scheduled");
    assert!(app.broker_get(&tenant, "later").await.is_none());

    let list = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages?status=scheduled"),
            &app.admin,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"][0]["id"], id.as_str());

    let cancel = format!("/api/v1/tenants/{tenant}/messages/{id}/cancel");
    let token = app.tenant_token(&tenant);
    let r = app.call(Method::POST, &cancel, Some(&token), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert!(r.body["cancelled_at"].is_string());
    let again = app.call(Method::POST, &cancel, Some(&token), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "message_not_scheduled");
    let list = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages?status=cancelled"),
            &app.admin,
        )
        .await;
    assert_eq!(list.body["items"][0]["id"], id.as_str());

    // A message that was never scheduled cannot be cancelled; an unknown one is 404.
    let now = app.publish(&tenant, "later", json!({"b": 2})).await;
    let now_id = now.body["id"].as_str().unwrap();
    let r = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/messages/{now_id}/cancel"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "message_not_scheduled")
    );
    let r = app
        .call(
            Method::POST,
            &format!(
                "/api/v1/tenants/{tenant}/messages/{}/cancel",
                uuid::Uuid::now_v7()
            ),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "message_not_found")
    );
}

#[tokio::test]
async fn batch_items_take_delays_and_keys_and_a_replay_returns_the_scheduled_message() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let at = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    let r = app
        .post(
            &format!("/api/v1/tenants/{tenant}/messages/batch"),
            &app.admin,
            json!({"messages": [
                {"queue_name": "b", "message_body": 1, "deliver_at": at, "idempotency_key": "k1"},
                {"queue_name": "b", "message_body": 2, "ordering_key": "o"},
                {"queue_name": "b", "message_body": 3, "deliver_after": "0s"},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let statuses: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["scheduled", "queued", "queued"]);
    let first = r.body["results"][0]["id"].as_str().unwrap().to_string();

    let replay = app
        .call_with(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/messages"),
            Some(&app.admin),
            Some(json!({"queue_name": "b", "message_body": 1, "deliver_at": at})),
            &[("Idempotency-Key", "k1")],
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.body);
    assert_eq!(replay.body["id"], first.as_str());
    assert_eq!(replay.body["status"], "scheduled");
    assert_eq!(replay.body["idempotent_replay"], true);
    // The same key with another ordering key is another message.
    let other = app
        .call_with(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/messages"),
            Some(&app.admin),
            Some(json!({"queue_name": "b", "message_body": 1, "ordering_key": "x"})),
            &[("Idempotency-Key", "k1")],
        )
        .await;
    assert_eq!(other.code(), "idempotency_key_reused");
}

#[tokio::test]
async fn delays_keys_and_on_dead_letter_are_checked_with_stable_codes() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let past_max = (chrono::Utc::now() + chrono::Duration::days(8)).to_rfc3339();
    for (extra, code) in [
        (json!({"deliver_after": "8d"}), "invalid_delivery_time"),
        (json!({"deliver_after": "soon"}), "invalid_delivery_time"),
        (json!({"deliver_after": "5 s"}), "invalid_delivery_time"),
        (json!({"deliver_at": "tomorrow"}), "invalid_delivery_time"),
        (json!({"deliver_at": past_max}), "invalid_delivery_time"),
        (
            json!({"deliver_after": "1s", "deliver_at": "2030-01-01T00:00:00Z"}),
            "invalid_delivery_time",
        ),
        (json!({"ordering_key": ""}), "invalid_ordering_key"),
        (json!({"ordering_key": "has space"}), "invalid_ordering_key"),
        (
            json!({"ordering_key": "k".repeat(129)}),
            "invalid_ordering_key",
        ),
        (json!({"ordering_key": 7}), "invalid_json"),
    ] {
        let mut body = json!({"queue_name": "v", "message_body": 1});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = publish(&app, &tenant, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
        // In a batch the item refuses the whole batch, naming it.
        let batch = app
            .post(
                &format!("/api/v1/tenants/{tenant}/messages/batch"),
                &app.admin,
                json!({"messages": [{"queue_name": "v", "message_body": 0}, body]}),
            )
            .await;
        assert_eq!(
            (batch.status, batch.code()),
            (StatusCode::BAD_REQUEST, code)
        );
        let text = batch.body["error"]["message"].as_str().unwrap();
        assert!(text.contains("messages[1]"), "{text}");
    }
    let list = app
        .get(&format!("/api/v1/tenants/{tenant}/messages"), &app.admin)
        .await;
    assert_eq!(list.body["items"], json!([]), "nothing stored");

    let config = format!("/api/v1/tenants/{tenant}/consumers/v/config");
    let r = app
        .call(
            Method::PUT,
            &config,
            Some(&app.admin),
            Some(json!({"workers": 2, "on_dead_letter": "stop"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_on_dead_letter")
    );
    let r = app
        .call(
            Method::PUT,
            &config,
            Some(&app.admin),
            Some(json!({"workers": 2, "on_dead_letter": "block"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["on_dead_letter"], "block");
    // Left out, it keeps its value.
    let r = app
        .call(
            Method::PUT,
            &config,
            Some(&app.admin),
            Some(json!({"workers": 3})),
        )
        .await;
    assert_eq!(r.body["on_dead_letter"], "block");
}

/// A delayed message outlives a broker outage: it lives in PostgreSQL only, a relay tick
/// while the broker is cut (a TCP proxy in front of the shared RabbitMQ, which is not
/// restarted) leaves it `pending`, and a fresh context, as a restarted process would have,
/// puts it on the broker once the broker answers, never before its `deliver_at`.
#[tokio::test]
async fn a_delayed_message_survives_a_broker_outage_and_a_fresh_relay_delivers_it() {
    let proxy = TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let app = spawn_with(|c| {
        c.rabbitmq_url = url;
        c.relay.publish_timeout = Duration::from_secs(3);
    })
    .await;
    let tenant = app.create_tenant().await;
    let r = publish(
        &app,
        &tenant,
        json!({"queue_name": "delayed", "message_body": {"d": 1}, "deliver_after": "1s"}),
    )
    .await;
    assert_eq!(r.body["status"], "scheduled", "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let deliver_at: chrono::DateTime<chrono::Utc> =
        r.body["deliver_at"].as_str().unwrap().parse().unwrap();

    proxy.cut().await;
    // Once it is due, a tick on the cut-off broker releases it but cannot publish it.
    while chrono::Utc::now() <= deliver_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = relay::run_once(&app.ctx).await.unwrap();
    assert!(report.failed >= 1, "{report:?}");
    assert_eq!(show(&app, &tenant, &id).await["status"], "pending");

    // A fresh context (a restarted process) over the real broker relays it.
    drop(app);
    let fresh = spawn_with(|c| c.relay.stale_after = Duration::ZERO).await;
    let mut status = Value::Null;
    for _ in 0..40 {
        relay::run_once(&fresh.ctx).await.unwrap();
        status = show(&fresh, &tenant, &id).await["status"].clone();
        if status == "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, "queued");
    let m = show(&fresh, &tenant, &id).await;
    let queued_at: chrono::DateTime<chrono::Utc> =
        m["queued_at"].as_str().unwrap().parse().unwrap();
    assert!(
        queued_at >= deliver_at,
        "queued {queued_at}, due {deliver_at}"
    );
    let copy = fresh
        .broker_get(&tenant, "delayed")
        .await
        .expect("on the broker");
    assert_eq!(
        copy.delivery
            .properties
            .message_id()
            .as_ref()
            .unwrap()
            .as_str(),
        id
    );
}
