//! Per-tenant limits: publish rate (token bucket in PostgreSQL), queues, message size, backlog.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn set_limits(app: &TestApp, tenant: &str, limits: Value) -> Value {
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{tenant}/limits"),
            Some(&app.admin),
            Some(limits),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn batch(app: &TestApp, tenant: &str, n: usize) -> crate::helpers::Resp {
    let messages: Vec<Value> = (0..n)
        .map(|i| json!({ "queue_name": "default", "message_body": { "i": i } }))
        .collect();
    app.post(
        &format!("/api/v1/tenants/{tenant}/messages/batch"),
        &app.admin,
        json!({ "messages": messages }),
    )
    .await
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_while_another_keeps_publishing() {
    let app = spawn_app().await;
    let noisy = app.create_tenant().await;
    let quiet = app.create_tenant().await;
    // A rate so low that no token comes back during the test.
    for t in [&noisy, &quiet] {
        set_limits(
            &app,
            t,
            json!({ "publish_rate": 0.001, "publish_burst": 3 }),
        )
        .await;
    }
    for i in 0..3 {
        let r = app.publish(&noisy, "default", json!({ "i": i })).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    }
    let limited = app.publish(&noisy, "default", json!({ "i": 3 })).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");

    // The other tenant has its own bucket: all of its burst goes through, noisy stays limited.
    for i in 0..3 {
        let r = app.publish(&quiet, "default", json!({ "i": i })).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        let again = app.publish(&noisy, "default", json!({ "again": i })).await;
        assert_eq!(again.code(), "rate_limited");
    }

    // Only accepted messages were stored.
    let list = app
        .get(&format!("/api/v1/tenants/{noisy}/messages"), &app.admin)
        .await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        3,
        "{}",
        list.body
    );

    // The tenant's view shows the limit in force and the empty bucket.
    let view = app
        .get(&format!("/api/v1/tenants/{noisy}"), &app.admin)
        .await;
    assert_eq!(view.body["limits"]["publish_burst"], 3, "{}", view.body);
    assert!(view.body["usage"]["publish_tokens"].as_f64().unwrap() < 1.0);
    assert_eq!(view.body["usage"]["backlog"], 3);
}

#[tokio::test]
async fn a_batch_takes_one_token_per_message() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    set_limits(
        &app,
        &t,
        json!({ "publish_rate": 0.001, "publish_burst": 5 }),
    )
    .await;
    let r = batch(&app, &t, 4).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["accepted"], 4);
    let r = batch(&app, &t, 2).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.code(), "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // The last token is still there: the refused batch took none.
    let r = app.publish(&t, "default", json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let r = batch(&app, &t, 6).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "batch_exceeds_burst");
}

#[tokio::test]
async fn queue_count_message_size_and_backlog_are_limited() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let view = set_limits(
        &app,
        &t,
        json!({ "max_queues": 2, "max_message_bytes": 64, "max_backlog": 3 }),
    )
    .await;
    assert_eq!(view["limits"]["max_queues"], 2);
    assert_eq!(view["overrides"]["publish_rate"], Value::Null);

    // "default" exists; one more queue fits, a third does not.
    assert_eq!(
        app.publish(&t, "second", json!({})).await.status,
        StatusCode::ACCEPTED
    );
    let r = app.publish(&t, "third", json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.code(), "queue_limit_reached");
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{t}/consumers/third/config"),
            Some(&app.admin),
            Some(json!({ "workers": 1 })),
        )
        .await;
    assert_eq!(r.code(), "queue_limit_reached", "{}", r.body);

    let r = app
        .publish(&t, "default", json!({ "text": "x".repeat(100) }))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "message_too_large");

    // One message is stored already; two more fit, the fourth is over the backlog.
    for _ in 0..2 {
        assert_eq!(
            app.publish(&t, "default", json!({})).await.status,
            StatusCode::ACCEPTED
        );
    }
    let r = app.publish(&t, "default", json!({})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert_eq!(r.code(), "backlog_limit_reached");
    assert!(r.headers.contains_key("retry-after"));

    let view = app
        .get(&format!("/api/v1/tenants/{t}"), &app.tenant_token(&t))
        .await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.body["usage"]["queues"], 2, "{}", view.body);
    assert_eq!(view.body["usage"]["backlog"], 3);
    assert_eq!(view.body["limits"]["max_message_bytes"], 64);
}

#[tokio::test]
async fn only_admins_set_limits_and_bad_values_are_refused() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{t}/limits");
    let tenant_token = app.tenant_token(&t);
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&tenant_token),
            Some(json!({ "max_queues": 1000 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (body, code) in [
        (json!({ "publish_burst": 0 }), "invalid_limits"),
        (json!({ "publish_rate": -1 }), "invalid_limits"),
        // Issue #15, defect 12: a rate near f64::MAX overflowed the bucket's arithmetic (500s).
        (json!({ "publish_rate": 1.7e308 }), "invalid_limits"),
        (json!({ "publish_rate": 1_000_000.5 }), "invalid_limits"),
        (
            json!({ "max_backlog": 9_007_199_254_740_992u64 }),
            "invalid_limits",
        ),
        (json!({ "max_queue": 3 }), "invalid_json"),
    ] {
        let r = app
            .call(Method::PUT, &path, Some(&app.admin), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
        assert_eq!(r.code(), code);
    }
    let unknown = app
        .call(
            Method::PUT,
            "/api/v1/tenants/00000000-0000-7000-8000-000000000000/limits",
            Some(&app.admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversized_and_unknown_field_bodies_get_the_json_error_shape() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{t}/limits");
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({ "max_queues": 1, "colour": "red" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "invalid_json");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        r.body
    );
    // Past the global body limit, on a route that is not a publish.
    let huge = "x".repeat(api::routes::MAX_REQUEST_BYTES + 1);
    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({ "pad": huge })),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(r.code(), "payload_too_large");
    let r = app
        .get(
            &format!("/api/v1/tenants/{t}/messages?limit=100000"),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}

/// Issue #15, defect 12: `max_queues` was checked, then the queue inserted, so concurrent
/// creations (first publishes to new queues, or config PUTs) all passed the check. Now queue
/// creation holds the tenant's row lock: whatever the interleaving, the tenant ends with at
/// most `max_queues` queues, and each refused creation answered 409.
#[tokio::test]
async fn concurrent_new_queues_never_pass_max_queues() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{tenant}/limits"),
            Some(&app.admin),
            Some(json!({ "max_queues": 3 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let queues: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let paths: Vec<String> = (0..8)
        .map(|i| format!("/api/v1/tenants/{tenant}/consumers/c{i}/config"))
        .collect();
    let publishes = queues.iter().map(|q| app.publish(&tenant, q, json!(1)));
    let configs = paths.iter().map(|path| {
        app.call(
            Method::PUT,
            path,
            Some(&app.admin),
            Some(json!({ "workers": 1 })),
        )
    });
    let (published, configured) = tokio::join!(
        futures::future::join_all(publishes),
        futures::future::join_all(configs)
    );
    let created = published
        .iter()
        .chain(&configured)
        .filter(|r| r.status.is_success())
        .count();
    for r in published.iter().chain(&configured) {
        if !r.status.is_success() {
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::CONFLICT, "queue_limit_reached")
            );
        }
    }
    let queues = app
        .get(&format!("/api/v1/tenants/{tenant}/consumers"), &app.admin)
        .await;
    let n = queues.body["items"].as_array().unwrap().len();
    // The tenant's `default` queue is one of the three.
    assert_eq!(n, 3, "{}", queues.body);
    assert_eq!(created, 2, "two new queues fit beside `default`");
}
