use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_with};

#[tokio::test]
async fn configure_a_queue_consumer() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{t}/consumers/orders/config");
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({ "workers": 7, "retry_attempts": 5, "retry_delay_ms": 250 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["workers"], 7);
    assert_eq!(r.body["retry_attempts"], 5);
    assert_eq!(r.body["retry_delay_ms"], 250);
    assert_eq!(r.body["enabled"], true);
    assert!(
        r.body["signing_secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );

    // Fields left out keep their value; enabled and endpoint can be changed and cleared.
    let r = app
        .call(Method::PUT, &path, Some(&app.admin), Some(json!({ "workers": 2, "enabled": false, "endpoint_url": "https://example.com/hook" })))
        .await;
    assert_eq!(
        (
            r.body["workers"].as_u64(),
            r.body["retry_attempts"].as_u64()
        ),
        (Some(2), Some(5))
    );
    assert_eq!(r.body["enabled"], false);
    assert_eq!(r.body["endpoint_url"], "https://example.com/hook");
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({ "workers": 2, "endpoint_url": null })),
        )
        .await;
    assert!(r.body["endpoint_url"].is_null());

    let list = app
        .get(&format!("/api/v1/tenants/{t}/consumers"), &app.admin)
        .await;
    let names: Vec<_> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["queue_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "orders"]);

    let status = app.get("/api/v1/consumers/status", &app.admin).await;
    assert_eq!(status.status, StatusCode::OK);
    let mine = status.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tenant_id"] == t.as_str())
        .count();
    assert_eq!(mine, 2);
}

#[tokio::test]
async fn out_of_range_consumer_configs_are_refused() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{t}/consumers/orders/config");
    let cases = [
        (json!({ "workers": 11 }), "invalid_workers"),
        (json!({ "workers": -1 }), "invalid_workers"),
        (
            json!({ "workers": 1, "retry_attempts": 101 }),
            "invalid_retry_attempts",
        ),
        (
            json!({ "workers": 1, "retry_delay_ms": 0 }),
            "invalid_retry_delay",
        ),
        (
            json!({ "workers": 1, "endpoint_url": "ftp://x" }),
            "invalid_endpoint_url",
        ),
        (json!({ "retry_attempts": 1 }), "invalid_json"),
        (json!({ "workers": 1, "speed": 9 }), "invalid_json"),
    ];
    for (body, code) in cases {
        let r = app
            .call(Method::PUT, &path, Some(&app.admin), Some(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{t}/consumers/Bad.Name/config"),
            Some(&app.admin),
            Some(json!({"workers": 1})),
        )
        .await;
    assert_eq!(r.code(), "invalid_queue_name");
    let r = app
        .call(
            Method::PUT,
            &format!(
                "/api/v1/tenants/{}/consumers/q/config",
                uuid::Uuid::new_v4()
            ),
            Some(&app.admin),
            Some(json!({"workers": 1})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "tenant_not_found")
    );
    // Nothing was stored by the refused calls.
    let list = app
        .get(&format!("/api/v1/tenants/{t}/consumers"), &app.admin)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

/// A full batch must finish inside the consumer function's timeout: too few workers for it are
/// refused, naming the smallest number that fits, and nothing is stored.
#[tokio::test]
async fn workers_too_few_for_the_function_timeout_are_refused() {
    let app = spawn_with(|c| {
        // A batch of 10 at up to 30 s each in 300 s less the 5 s margin: 9 rounds, 2 workers.
        c.consumer.batch_size = 10;
        c.consumer.processing_timeout = std::time::Duration::from_secs(30);
        c.consumer.function_timeout = std::time::Duration::from_secs(300);
    })
    .await;
    let t = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{t}/consumers/orders/config");
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({"workers": 1})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "batch_exceeds_function_timeout")
    );
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("at least 2"), "{message}");
    let list = app
        .get(&format!("/api/v1/tenants/{t}/consumers"), &app.admin)
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "not stored"
    );
    for workers in [0, 2] {
        let r = app
            .call(
                Method::PUT,
                &path,
                Some(&app.admin),
                Some(json!({"workers": workers})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{workers}: {:?}", r.body);
    }
}

/// What the consumer recorded as none of ours shows in both status routes, per queue and only
/// to its tenant; a queue without any shows a zero count.
#[tokio::test]
async fn the_status_routes_show_unmapped_messages_per_queue() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let other = app.create_tenant().await;
    for (tenant, queue) in [(&t, "orders"), (&t, "quiet"), (&other, "orders")] {
        let r = app.publish(tenant, queue, json!(1)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let tid: shared::domain::TenantId = t.parse().unwrap();
    shared::db::unmapped::record(&app.ctx.db, tid, "orders", 3, "no_message_id")
        .await
        .unwrap();
    shared::db::unmapped::record(&app.ctx.db, tid, "orders", 2, "unknown_message")
        .await
        .unwrap();

    let items = |body: &serde_json::Value, tenant: &str| -> Vec<serde_json::Value> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["tenant_id"] == tenant)
            .cloned()
            .collect()
    };
    let find = |items: &[serde_json::Value], queue: &str| {
        items
            .iter()
            .find(|i| i["queue_name"] == queue)
            .unwrap_or_else(|| panic!("no {queue} in {items:?}"))
            .clone()
    };
    let token = app.tenant_token(&t);
    let mine = app
        .get(&format!("/api/v1/tenants/{t}/consumers"), &token)
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    let mine = items(&mine.body, &t);
    let orders = find(&mine, "orders");
    assert_eq!(orders["unmapped"]["count"], 5);
    assert_eq!(orders["unmapped"]["last_reason"], "unknown_message");
    let seen: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(orders["unmapped"]["last_seen_at"].clone()).unwrap();
    assert!((chrono::Utc::now() - seen).num_seconds().abs() < 60);
    let quiet = find(&mine, "quiet");
    assert_eq!(quiet["unmapped"]["count"], 0);
    assert!(quiet["unmapped"]["last_seen_at"].is_null());

    let all = app.get("/api/v1/consumers/status", &app.admin).await;
    assert_eq!(
        find(&items(&all.body, &t), "orders")["unmapped"]["count"],
        5
    );
    assert_eq!(
        find(&items(&all.body, &other), "orders")["unmapped"]["count"],
        0,
        "another tenant's queue of the same name is not counted"
    );
}

/// The `messages` figures of the tenant's `orders` queue in its status.
async fn shown(app: &crate::helpers::TestApp, t: &str) -> serde_json::Value {
    let r = app
        .get(&format!("/api/v1/tenants/{t}/consumers"), &app.admin)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["items"].as_array().unwrap();
    let orders = items.iter().find(|i| i["queue_name"] == "orders").unwrap();
    orders["messages"].clone()
}

/// The tenant's dead letters as stored.
async fn stored(app: &crate::helpers::TestApp, t: shared::domain::TenantId) -> i64 {
    let client = app.ctx.db.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM messages WHERE tenant_id = $1 AND status = 'dead_lettered'",
            &[&t.0],
        )
        .await
        .unwrap()
        .get(0)
}

/// Dead letters per queue come from counters a trigger keeps (migration V13): they follow
/// every way a message becomes or stops being one (dead-lettered by a consumer, redriven,
/// deleted by retention) and match the rows.
#[tokio::test]
async fn the_status_counts_dead_letters_as_they_come_and_go() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let tid: shared::domain::TenantId = t.parse().unwrap();
    let mut ids = Vec::new();
    for n in 0..4 {
        let r = app.publish(&t, "orders", json!(n)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        ids.push(
            r.body["id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        );
    }
    assert!(shown(&app, &t).await["dead_lettered"].is_null());

    // A consumer dead-letters three.
    let claimed = shared::db::messages::claim(
        &app.ctx.db,
        tid,
        "orders",
        &ids[..3],
        std::time::Duration::from_secs(30),
        false,
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 3);
    for c in &claimed {
        let settled = shared::db::messages::settle(
            &app.ctx.db,
            tid,
            c.id,
            c.total_attempts,
            &shared::db::messages::Settlement::DeadLettered { error: "gone" },
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(settled);
    }
    let messages = shown(&app, &t).await;
    assert_eq!(messages["dead_lettered"], 3, "{messages}");
    assert_eq!(messages["queued"], 1, "{messages}");
    assert_eq!(stored(&app, tid).await, 3);

    // One is redriven.
    let r = app
        .post(
            &format!("/api/v1/tenants/{t}/dead-letters/redrive"),
            &app.admin,
            json!({ "message_ids": [ids[0]] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(shown(&app, &t).await["dead_lettered"], 2);
    assert_eq!(stored(&app, tid).await, 2);

    // One expires and the retention sweep deletes it.
    let client = app.ctx.db.get().await.unwrap();
    client
        .execute(
            "UPDATE messages SET dead_lettered_at = now() - interval '40 days' WHERE id = $1",
            &[&ids[1]],
        )
        .await
        .unwrap();
    shared::services::retention::sweep(&app.ctx).await.unwrap();
    assert_eq!(shown(&app, &t).await["dead_lettered"], 1);
    assert_eq!(stored(&app, tid).await, 1);
}
