use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{header_str, spawn_app};

#[tokio::test]
async fn published_message_is_stored_and_on_the_tenant_queue() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let r = app
        .post(
            &format!("/api/v1/tenants/{tenant}/messages"),
            &app.admin,
            json!({ "queue_name": "orders", "message_body": {"order": 42}, "headers": {"trace-id": "t-1"} }),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["status"], "queued");
    let id = r.body["id"].as_str().unwrap().to_string();

    let stored = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages/{id}"),
            &app.admin,
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK);
    assert_eq!(stored.body["message_body"], json!({"order": 42}));
    assert_eq!(stored.body["headers"]["trace-id"], "t-1");
    assert_eq!(stored.body["status"], "queued");
    assert_eq!(stored.body["attempts"], 0);
    assert!(stored.body["queued_at"].is_string());

    let msg = app
        .broker_get(&tenant, "orders")
        .await
        .expect("message on the broker");
    let props = &msg.delivery.properties;
    assert_eq!(props.message_id().as_ref().map(|s| s.to_string()), Some(id));
    assert_eq!(*props.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        header_str(&msg, "x-msg-tenant-id").as_deref(),
        Some(tenant.as_str())
    );
    assert_eq!(header_str(&msg, "x-msg-queue").as_deref(), Some("orders"));
    assert_eq!(header_str(&msg, "trace-id").as_deref(), Some("t-1"));
    assert_eq!(
        serde_json::from_slice::<Value>(&msg.delivery.data).unwrap(),
        json!({"order": 42})
    );

    // A new queue gets its consumer config with the defaults.
    let consumers = app
        .get(&format!("/api/v1/tenants/{tenant}/consumers"), &app.admin)
        .await;
    let queues: Vec<&str> = consumers.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["queue_name"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["default", "orders"]);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_message() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{tenant}/messages");
    let body = json!({ "queue_name": "orders", "message_body": "hello" });
    let key = [("Idempotency-Key", "order-42")];
    let first = app
        .call_with(
            Method::POST,
            &path,
            Some(&app.admin),
            Some(body.clone()),
            &key,
        )
        .await;
    let second = app
        .call_with(
            Method::POST,
            &path,
            Some(&app.admin),
            Some(body.clone()),
            &key,
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["id"], second.body["id"]);
    assert_eq!(second.body["idempotent_replay"], true);
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");

    let list = app
        .get(&format!("{path}?queue_name=orders"), &app.admin)
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "one message stored"
    );
    assert!(app.broker_get(&tenant, "orders").await.is_some());
    assert!(
        app.broker_get(&tenant, "orders").await.is_none(),
        "published once"
    );

    // The same key for another message is a conflict, not a silent replay.
    let other = json!({ "queue_name": "orders", "message_body": "different" });
    let clash = app
        .call_with(Method::POST, &path, Some(&app.admin), Some(other), &key)
        .await;
    assert_eq!(
        (clash.status, clash.code()),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );

    // Keys are per tenant.
    let tenant2 = app.create_tenant().await;
    let path2 = format!("/api/v1/tenants/{tenant2}/messages");
    let elsewhere = app
        .call_with(Method::POST, &path2, Some(&app.admin), Some(body), &key)
        .await;
    assert_eq!(elsewhere.status, StatusCode::ACCEPTED);
    assert_ne!(elsewhere.body["id"], first.body["id"]);
}

/// An item that breaks the document's item schema refuses the whole batch, naming the item,
/// and stores nothing; what depends on the tenant (its message size limit, a key already
/// used) is answered item by item.
#[tokio::test]
async fn batch_with_good_and_bad_items() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{tenant}/messages/batch");
    let good = json!({ "queue_name": "jobs", "message_body": {"n": 0} });
    for (bad, code) in [
        (
            json!({ "queue_name": "Bad Queue", "message_body": 1 }),
            "invalid_queue_name",
        ),
        (json!({ "queue_name": "jobs" }), "invalid_message_body"),
        (json!("not an object"), "invalid_json"),
        // An item is an object, not an array of its fields.
        (json!(["jobs", {"n": 7}]), "invalid_json"),
        (json!([null, null]), "invalid_json"),
        (
            json!({ "queue_name": "jobs", "message_body": 1, "headers": {"x-msg-id": "1"} }),
            "invalid_headers",
        ),
        (
            json!({ "queue_name": "jobs", "message_body": 1, "idempotency_key": "" }),
            "invalid_idempotency_key",
        ),
    ] {
        let r = app
            .post(
                &path,
                &app.admin,
                json!({ "messages": [good.clone(), bad.clone()] }),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{bad}"
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("messages[1]: "), "{message}");
    }

    app.call(
        Method::PUT,
        &format!("/api/v1/tenants/{tenant}/limits"),
        Some(&app.admin),
        Some(json!({ "max_message_bytes": 64 })),
    )
    .await;
    let r = app
        .post(
            &path,
            &app.admin,
            json!({ "messages": [
                { "queue_name": "jobs", "message_body": {"n": 1} },
                { "queue_name": "jobs", "message_body": "x".repeat(100) },
                { "queue_name": "jobs", "message_body": {"n": 3}, "idempotency_key": "k3" },
                { "queue_name": "jobs", "message_body": {"n": 3}, "idempotency_key": "k3" },
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["accepted"], 3);
    assert_eq!(r.body["rejected"], 1);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    for (i, res) in results.iter().enumerate() {
        assert_eq!(res["index"], i);
    }
    assert_eq!(results[0]["status"], "queued");
    assert_eq!(results[1]["error"]["code"], "message_too_large");
    assert_eq!(results[2]["status"], "queued");
    // A repeated key inside the batch refers to the same message.
    assert_eq!(results[3]["id"], results[2]["id"]);
    assert_eq!(results[3]["idempotent_replay"], true);

    let stored = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages?queue_name=jobs"),
            &app.admin,
        )
        .await;
    assert_eq!(stored.body["items"].as_array().unwrap().len(), 2);
    let mut on_broker = 0;
    while app.broker_get(&tenant, "jobs").await.is_some() {
        on_broker += 1;
    }
    assert_eq!(on_broker, 2);

    let empty = app
        .post(
            &format!("/api/v1/tenants/{tenant}/messages/batch"),
            &app.admin,
            json!({"messages": []}),
        )
        .await;
    assert_eq!(
        (empty.status, empty.code()),
        (StatusCode::BAD_REQUEST, "invalid_batch")
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"queue_name": "jobs", "message_body": i}))
        .collect();
    let big = app
        .post(
            &format!("/api/v1/tenants/{tenant}/messages/batch"),
            &app.admin,
            json!({"messages": too_many}),
        )
        .await;
    assert_eq!(
        (big.status, big.code()),
        (StatusCode::BAD_REQUEST, "invalid_batch")
    );
}

#[tokio::test]
async fn publish_validation_errors() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{tenant}/messages");
    let big = "x".repeat(256 * 1024);
    let cases = [
        (
            json!({ "queue_name": "", "message_body": 1 }),
            StatusCode::BAD_REQUEST,
            "invalid_queue_name",
        ),
        (
            json!({ "queue_name": "a.b", "message_body": 1 }),
            StatusCode::BAD_REQUEST,
            "invalid_queue_name",
        ),
        (
            json!({ "queue_name": "q", "message_body": null }),
            StatusCode::BAD_REQUEST,
            "invalid_message_body",
        ),
        (
            json!({ "queue_name": "q" }),
            StatusCode::BAD_REQUEST,
            "invalid_message_body",
        ),
        // Found by schemathesis: serde reads a struct from an array of its fields.
        (json!(["q", 1]), StatusCode::BAD_REQUEST, "invalid_json"),
        // Found by schemathesis: PostgreSQL's jsonb refuses U+0000 (it was a 500).
        (
            json!({ "queue_name": "q", "message_body": {"k\u{0}": "v\u{0}"} }),
            StatusCode::BAD_REQUEST,
            "invalid_message_body",
        ),
        (
            json!({ "queue_name": "q", "message_body": big }),
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
        ),
        (
            json!({ "queue_name": "q", "message_body": 1, "headers": {"x-msg-queue": "evil"} }),
            StatusCode::BAD_REQUEST,
            "invalid_headers",
        ),
        (
            json!({ "queue_name": "q", "message_body": 1, "headers": {"bad header": "v"} }),
            StatusCode::BAD_REQUEST,
            "invalid_headers",
        ),
        (
            json!({ "queue_name": "q", "message_body": 1, "headers": {"h": 5} }),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({ "queue_name": "q", "message_body": 1, "priority": 5 }),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let r = app.post(&path, &app.admin, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code),
            "{}",
            &body.to_string()[..80.min(body.to_string().len())]
        );
    }
    // Not JSON at all.
    let raw = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.admin)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let r = app
        .call_with(
            Method::POST,
            &path,
            Some(&app.admin),
            Some(json!({"queue_name": "q", "message_body": 1})),
            &[("Idempotency-Key", "has space")],
        )
        .await;
    assert_eq!(r.code(), "invalid_idempotency_key");

    // Nothing half-written: none of the rejected requests stored a message.
    let list = app.get(&path, &app.admin).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 0);

    let missing = app
        .get(&format!("{path}/{}", uuid::Uuid::new_v4()), &app.admin)
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "message_not_found")
    );
    let bad_id = app.get(&format!("{path}/nope"), &app.admin).await;
    assert_eq!(
        (bad_id.status, bad_id.code()),
        (StatusCode::BAD_REQUEST, "invalid_message_id")
    );
    let bad_status = app.get(&format!("{path}?status=done"), &app.admin).await;
    assert_eq!(
        (bad_status.status, bad_status.code()),
        (StatusCode::BAD_REQUEST, "invalid_status")
    );
    let unknown_tenant = app
        .publish(&uuid::Uuid::new_v4().to_string(), "q", json!(1))
        .await;
    assert_eq!(
        (unknown_tenant.status, unknown_tenant.code()),
        (StatusCode::NOT_FOUND, "tenant_not_found")
    );
}

#[tokio::test]
async fn messages_page_newest_first_with_filters() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut published = Vec::new();
    let mut answered = Vec::new();
    for i in 0..7 {
        let queue = if i % 2 == 0 { "even" } else { "odd" };
        let r = app.publish(&tenant, queue, json!({ "i": i })).await;
        published.push(r.body["id"].as_str().unwrap().to_string());
        answered.push(r.body["status"].clone());
    }
    let base = format!("/api/v1/tenants/{tenant}/messages");
    let mut listed = Vec::new();
    let mut cursor = String::new();
    for expected_len in [3, 3, 1] {
        let page = app
            .get(&format!("{base}?limit=3&cursor={cursor}"), &app.admin)
            .await;
        let items = page.body["items"].as_array().unwrap();
        assert_eq!(items.len(), expected_len);
        listed.extend(items.iter().map(|m| m["id"].as_str().unwrap().to_string()));
        cursor = page.body["next_cursor"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    assert!(cursor.is_empty(), "no page after the last");
    published.reverse();
    assert_eq!(listed, published, "every message once, newest first");

    let odd = app
        .get(&format!("{base}?queue_name=odd&limit=100"), &app.admin)
        .await;
    assert_eq!(odd.body["items"].as_array().unwrap().len(), 3);
    let queued = app
        .get(&format!("{base}?status=queued&queue_name=even"), &app.admin)
        .await;
    let even = app
        .get(&format!("{base}?queue_name=even"), &app.admin)
        .await;
    // Shows which status a message had when this fails (seen once in a full run: 3 of 4).
    assert_eq!(
        queued.body["items"].as_array().unwrap().len(),
        4,
        "publishes answered {answered:?}; even now: {:?}",
        even.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (&m["status"], &m["attempts"], &m["last_error"]))
            .collect::<Vec<_>>()
    );
    let completed = app
        .get(&format!("{base}?status=completed"), &app.admin)
        .await;
    assert_eq!(completed.body["items"].as_array().unwrap().len(), 0);
    let ids: HashSet<_> = listed.into_iter().collect();
    assert_eq!(ids.len(), 7);
}

/// Found by schemathesis: jsonb prints 1.7976931348623157e308 as 309 digits, which serde_json's
/// default (lossy) float parser refused when the message was read back (a dropped connection).
#[tokio::test]
async fn extreme_numbers_are_read_back() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let body = json!({"max": f64::MAX, "min": -f64::MAX, "tiny": 5e-324, "big": u64::MAX, "neg": i64::MIN});
    let published = app.publish(&tenant, "numbers", body.clone()).await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.body);
    let id = published.body["id"].as_str().unwrap();
    let stored = app
        .get(
            &format!("/api/v1/tenants/{tenant}/messages/{id}"),
            &app.admin,
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.body);
    assert_eq!(stored.body["message_body"], body);
    let list = app
        .get(&format!("/api/v1/tenants/{tenant}/messages"), &app.admin)
        .await;
    assert_eq!(list.status, StatusCode::OK);
}

/// The message view's `last_attempt` and the attempts route show what a webhook endpoint
/// answered: its status, the attempt's duration and the first bytes of its body.
#[tokio::test]
async fn the_message_view_and_its_attempts_show_what_the_endpoint_answered() {
    use shared::{
        broker::QueueRef,
        config::WebhookConfig,
        delivery::{BatchHandler, Builtin, Inbound},
        domain::{QueueName, TenantId},
    };
    use std::{sync::Arc, time::Duration};

    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let endpoint = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy, try later",
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{tenant}/consumers/hooks/config"),
            Some(&app.admin),
            Some(json!({"workers": 1, "retry_attempts": 2, "endpoint_url": url})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.publish(&tenant, "hooks", json!({"n": 1})).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/tenants/{tenant}/messages/{id}");
    let before = app.get(&path, &app.admin).await;
    assert_eq!(before.body["last_attempt"], Value::Null, "{}", before.body);

    let handler = BatchHandler::new(
        app.ctx.clone(),
        Arc::new(
            Builtin::new(&WebhookConfig {
                timeout: Duration::from_secs(5),
                allow_private: true,
                allow_http: true,
                response_excerpt_bytes: 4,
            })
            .unwrap(),
        ),
    );
    let queue = QueueRef::new(
        tenant.parse::<TenantId>().unwrap(),
        QueueName::parse("hooks").unwrap(),
    );
    let inbound = Inbound {
        message_id: Some(id.clone()),
        redelivered: false,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    let report = handler.handle(&queue, &[inbound], deadline).await.unwrap();
    assert_eq!(report.retried, 1, "{report:?}");

    let shown = app.get(&path, &app.admin).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["status"], "retrying");
    let last = &shown.body["last_attempt"];
    assert_eq!(last["attempt"], 1, "{}", shown.body);
    assert_eq!(last["outcome"], "retrying");
    assert_eq!(last["http_status"], 503);
    assert_eq!(last["response_excerpt"], "busy");
    assert!(last["duration_ms"].is_u64(), "{last}");
    let attempts = app.get(&format!("{path}/attempts"), &app.admin).await;
    assert_eq!(attempts.body["items"][0], *last);
    assert_eq!(attempts.body["items"].as_array().unwrap().len(), 1);
}
