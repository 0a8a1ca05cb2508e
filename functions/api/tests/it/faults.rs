//! Dependency faults, simulated per test with a TCP proxy in front of the real service.

use std::{net::SocketAddr, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::json;
use shared::testkit::TcpProxy;

use crate::helpers::spawn_with;

fn rabbitmq_addr() -> SocketAddr {
    "127.0.0.1:5672".parse().unwrap()
}

fn postgres_addr() -> SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

#[tokio::test]
async fn broker_outage_accepts_as_pending_and_the_relay_delivers_later() {
    let proxy = TcpProxy::start(rabbitmq_addr()).await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let app = spawn_with(|c| {
        c.rabbitmq_url = url;
        c.relay.stale_after = Duration::ZERO;
    })
    .await;
    let tenant = app.create_tenant().await;
    let before = app.publish(&tenant, "orders", json!({"n": 1})).await;
    assert_eq!(before.body["status"], "queued");

    proxy.cut().await;
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        health.body["checks"],
        json!({"database": "ok", "broker": "unavailable"})
    );

    let during = app.publish(&tenant, "orders", json!({"n": 2})).await;
    assert_eq!(
        during.status,
        StatusCode::ACCEPTED,
        "accepted: it is stored"
    );
    assert_eq!(during.body["status"], "pending");
    let id = during.body["id"].as_str().unwrap().to_string();
    let stored = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages/{id}"),
            &app.admin,
        )
        .await;
    assert_eq!(stored.body["status"], "pending");

    proxy.restore();
    // The relay sweeps until the broker is back (its reconnect backoff is short).
    let mut republished = false;
    for _ in 0..40 {
        let report = shared::outbox::relay::run_once(&app.ctx).await.unwrap();
        let now = app
            .get(
                &format!("/api/v1/tenants/{tenant}/messages/{id}"),
                &app.admin,
            )
            .await;
        if now.body["status"] == "queued" {
            republished = report.republished > 0 || republished;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let now = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages/{id}"),
            &app.admin,
        )
        .await;
    assert_eq!(now.body["status"], "queued", "relayed after the outage");
    assert!(republished);
    // Both messages are on the broker; nothing was lost.
    let mut ids = Vec::new();
    while let Some(m) = app.broker_get(&tenant, "orders").await {
        ids.push(
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string(),
        );
    }
    assert!(ids.contains(&id), "relayed message on the broker");
    assert!(ids.contains(&before.body["id"].as_str().unwrap().to_string()));
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[tokio::test]
async fn database_outage_refuses_publishes_clearly_and_recovers() {
    let proxy = TcpProxy::start(postgres_addr()).await;
    let db_url = {
        let real = shared::testkit::test_config().database_url;
        real.replace("127.0.0.1:5432", &proxy.addr.to_string())
    };
    let app = spawn_with(|c| c.database_url = db_url).await;
    let tenant = app.create_tenant().await;
    assert_eq!(
        app.publish(&tenant, "q", json!(1)).await.status,
        StatusCode::ACCEPTED
    );

    proxy.cut().await;
    let refused = app.publish(&tenant, "q", json!(2)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
    );
    assert!(
        !refused.body.to_string().to_lowercase().contains("postgres"),
        "no internals leak"
    );
    assert_eq!(refused.headers.get("retry-after").unwrap(), "1");
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["checks"]["database"], "unavailable");

    proxy.restore();
    let mut recovered = false;
    for _ in 0..40 {
        if app.publish(&tenant, "q", json!(3)).await.status == StatusCode::ACCEPTED {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "publishing works again once the database is back"
    );
    let list = app
        .get(&format!("/api/v1/tenants/{tenant}/messages"), &app.admin)
        .await;
    let bodies: Vec<_> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_body"].clone())
        .collect();
    assert!(bodies.contains(&json!(1)) && bodies.contains(&json!(3)));
    assert!(
        !bodies.contains(&json!(2)),
        "the refused message was not stored"
    );
}

#[tokio::test]
async fn broker_unreachable_from_the_start() {
    let app = spawn_with(|c| c.rabbitmq_url = "amqp://guest:guest@127.0.0.1:1/%2f".into()).await;
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["checks"]["broker"], "unavailable");
    let tenant = app.create_tenant().await;
    let r = app.publish(&tenant, "q", json!(1)).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("pending"))
    );
}
