use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::testkit::unique;

use crate::helpers::spawn_app;

#[tokio::test]
async fn create_get_list_and_deactivate() {
    let app = spawn_app().await;
    let name = unique("Acme");
    let created = app
        .post("/api/v1/tenants", &app.admin, json!({ "name": name }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["name"], name);
    assert_eq!(created.body["status"], "active");

    // The default consumer configuration comes with the tenant.
    let consumers = app
        .get(&format!("/api/v1/tenants/{id}/consumers"), &app.admin)
        .await;
    assert_eq!(consumers.status, StatusCode::OK);
    assert_eq!(consumers.body["items"][0]["queue_name"], "default");
    assert_eq!(consumers.body["items"][0]["config"]["workers"], 3);

    let dup = app
        .post(
            "/api/v1/tenants",
            &app.admin,
            json!({ "name": name.to_uppercase() }),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.code(), "tenant_name_taken");

    let got = app.get(&format!("/api/v1/tenants/{id}"), &app.admin).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["id"], id.as_str());

    let gone = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{id}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    assert_eq!(gone.body["status"], "inactive");
    let refused = app.publish(&id, "orders", json!({"x": 1})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "tenant_inactive");
    // The control plane (local here) removed its consumers and recorded it.
    let consumers = app
        .get(&format!("/api/v1/tenants/{id}/consumers"), &app.admin)
        .await;
    let item = &consumers.body["items"][0];
    assert_eq!(item["capacity"]["state"], "deleted", "{:?}", consumers.body);
    assert_eq!(item["mapping"]["state"], "deleted", "{:?}", consumers.body);
    // Its data stays readable.
    assert_eq!(
        app.get(&format!("/api/v1/tenants/{id}"), &app.admin)
            .await
            .body["status"],
        "inactive"
    );
}

/// `DELETE /tenants/{id}` deactivates: every read under the tenant keeps answering (and says
/// `inactive`), every change answers 409 `tenant_inactive` and stores nothing, and a second
/// DELETE changes nothing.
#[tokio::test]
async fn a_deactivated_tenant_reads_but_refuses_every_change() {
    let app = spawn_app().await;
    let id = app.create_tenant().await;
    let published = app.publish(&id, "orders", json!({"n": 1})).await;
    assert_eq!(published.status, StatusCode::ACCEPTED);
    let message = published.body["id"].as_str().unwrap().to_string();
    let t = format!("/api/v1/tenants/{id}");
    let first = app.call(Method::DELETE, &t, Some(&app.admin), None).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = app.call(Method::DELETE, &t, Some(&app.admin), None).await;
    assert_eq!(
        (again.status, &again.body["status"]),
        (StatusCode::OK, &json!("inactive"))
    );

    let t = format!("/api/v1/tenants/{id}");
    for path in [
        t.clone(),
        format!("{t}/capacity"),
        format!("{t}/consumers"),
        format!("{t}/messages"),
        format!("{t}/messages/{message}"),
        format!("{t}/messages/{message}/attempts"),
        format!("{t}/dead-letters"),
    ] {
        let r = app.get(&path, &app.admin).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.body);
    }
    let tenant_token = app.tenant_token(&id);
    let changes = [
        (
            Method::POST,
            format!("{t}/messages"),
            json!({"queue_name": "orders", "message_body": 2}),
        ),
        (
            Method::POST,
            format!("{t}/messages/batch"),
            json!({"messages": [{"queue_name": "orders", "message_body": 3}]}),
        ),
        (
            Method::PUT,
            format!("{t}/consumers/fresh/config"),
            json!({"workers": 1}),
        ),
        (
            Method::PUT,
            format!("{t}/consumers/orders/config"),
            json!({"workers": 2}),
        ),
        (Method::POST, format!("{t}/dead-letters/redrive"), json!({})),
        (Method::PUT, format!("{t}/limits"), json!({"max_queues": 5})),
        (
            Method::PUT,
            format!("{t}/capacity"),
            json!({"reserved_concurrency": 4}),
        ),
    ];
    for (method, path, body) in changes {
        // The tenant's own token and the admin's alike.
        for token in [&tenant_token, &app.admin] {
            if token == &tenant_token && (path.ends_with("/limits") || path.ends_with("/capacity"))
            {
                continue; // admin-only routes: 403 before anything else
            }
            let r = app
                .call(method.clone(), &path, Some(token), Some(body.clone()))
                .await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::CONFLICT, "tenant_inactive"),
                "{method} {path}"
            );
        }
    }
    // Nothing was stored by the refused changes.
    let messages = app.get(&format!("{t}/messages"), &app.admin).await;
    assert_eq!(messages.body["items"].as_array().unwrap().len(), 1);
    let consumers = app.get(&format!("{t}/consumers"), &app.admin).await;
    let queues: Vec<&str> = consumers.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue_name"].as_str().unwrap())
        .collect();
    assert!(!queues.contains(&"fresh"), "{queues:?}");
    let orders = consumers.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue_name"] == "orders")
        .unwrap();
    assert_ne!(orders["config"]["workers"], 2);
    let tenant = app.get(&t, &app.admin).await;
    assert_eq!(tenant.body["overrides"]["max_queues"], json!(null));
    let capacity = app.get(&format!("{t}/capacity"), &app.admin).await;
    assert_ne!(capacity.body["desired_concurrency"], 4);
}

/// JSON Schema counts `843.0` as an integer; so does every integer field of the API.
#[tokio::test]
async fn integers_may_be_written_with_a_zero_fraction() {
    let app = spawn_app().await;
    let id = app.create_tenant().await;
    let t = format!("/api/v1/tenants/{id}");
    let cases = [
        (
            format!("{t}/capacity"),
            json!({"reserved_concurrency": 7.0}),
        ),
        (
            format!("{t}/limits"),
            json!({"publish_burst": 20.0, "max_backlog": 1e3}),
        ),
        (
            format!("{t}/consumers/orders/config"),
            json!({"workers": 2.0, "retry_attempts": 3.0, "retry_delay_ms": 1500.0}),
        ),
    ];
    for (path, body) in cases {
        let r = app
            .call(Method::PUT, &path, Some(&app.admin), Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path} {body}: {}", r.body);
    }
    let capacity = app.get(&format!("{t}/capacity"), &app.admin).await;
    assert_eq!(capacity.body["desired_concurrency"], 7);
    let view = app.get(&t, &app.admin).await;
    assert_eq!(view.body["overrides"]["max_backlog"], 1000);
    for (path, body) in [
        (
            format!("{t}/capacity"),
            json!({"reserved_concurrency": 7.5}),
        ),
        (
            format!("{t}/consumers/orders/config"),
            json!({"workers": 1.25}),
        ),
    ] {
        let r = app
            .call(Method::PUT, &path, Some(&app.admin), Some(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_json"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn tenants_page_through_without_gaps_or_repeats() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.create_tenant().await;
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tenants?limit=2&cursor={c}"),
            None => "/api/v1/tenants?limit=2".to_string(),
        };
        let page = app.get(&path, &app.admin).await;
        assert_eq!(page.status, StatusCode::OK);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for t in items {
            assert!(
                seen.insert(t["id"].as_str().unwrap().to_string()),
                "repeated tenant"
            );
        }
        pages += 1;
        match page.body["next_cursor"].as_str() {
            Some(c) if pages < 10 => cursor = Some(c.to_string()),
            _ => break,
        }
    }
    assert!(seen.len() >= 3 || pages == 10);
}

#[tokio::test]
async fn tenant_validation_errors() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "name": "" }),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_name",
        ),
        (
            json!({ "name": "x".repeat(101) }),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_name",
        ),
        (
            json!({ "name": "ok", "extra": 1 }),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({ "nom": "ok" }),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({ "name": 5 }),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        // Refused, not trimmed: the document's pattern states the rule exactly.
        (
            json!({ "name": " Acme" }),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_name",
        ),
        (
            json!({ "name": "Acme\u{a0}" }),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_name",
        ),
        (
            json!({ "name": "A\u{85}B" }),
            StatusCode::BAD_REQUEST,
            "invalid_tenant_name",
        ),
    ];
    for (body, status, code) in cases {
        let r = app.post("/api/v1/tenants", &app.admin, body.clone()).await;
        assert_eq!((r.status, r.code()), (status, code), "{body}");
    }
    let r = app.get("/api/v1/tenants/not-a-uuid", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_tenant_id")
    );
    let r = app
        .get(
            &format!("/api/v1/tenants/{}", uuid::Uuid::new_v4()),
            &app.admin,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "tenant_not_found")
    );
    let r = app.get("/api/v1/tenants?limit=0", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_limit")
    );
    let r = app.get("/api/v1/tenants?limit=abc", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    let r = app.get("/api/v1/tenants?cursor=zzz", &app.admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_cursor")
    );
    let r = app.get("/api/v1/nothing-here", &app.admin).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn capacity_is_set_by_an_admin_and_applied_by_the_local_control_plane() {
    let app = spawn_app().await;
    let id = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{id}/capacity");

    // Onboarding made the tenant pooled (nothing reserved) and applied the default queue's
    // mapping.
    let status = app
        .get(&format!("/api/v1/tenants/{id}/consumers"), &app.admin)
        .await;
    let item = &status.body["items"][0];
    assert_eq!(item["tier"], "pooled", "{item}");
    assert_eq!(item["capacity"]["tier"], "pooled");
    assert_eq!(item["capacity"]["applied_concurrency"], Value::Null);
    assert_eq!(item["capacity"]["function_name"], "local-pooled");
    assert_eq!(item["capacity"]["state"], "applied");
    assert_eq!(item["mapping"]["state"], "applied");
    assert_eq!(item["mapping"]["enabled"], true);

    let set = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({ "reserved_concurrency": 7 })),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    // Dedicated; one queue runs at most one invocation, so 1 of the 7 is effective.
    assert_eq!(set.body["tier"], "dedicated");
    assert_eq!(set.body["desired_concurrency"], 7);
    assert_eq!(set.body["effective_concurrency"], 1);
    assert_eq!(set.body["applied_concurrency"], 1);
    assert_eq!(set.body["function_name"], "local");

    let tenant_token = app.tenant_token(&id);
    let forbidden = app
        .call(
            Method::PUT,
            &path,
            Some(&tenant_token),
            Some(json!({ "reserved_concurrency": 100 })),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let bad = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({ "reserved_concurrency": -1 })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "invalid_capacity");

    // A paused queue shows a disabled mapping.
    let paused = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{id}/consumers/default/config"),
            Some(&app.admin),
            Some(json!({ "workers": 0 })),
        )
        .await;
    assert_eq!(paused.status, StatusCode::OK);
    let all = app.get("/api/v1/consumers/status", &app.admin).await;
    let mine = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["tenant_id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["mapping"]["enabled"], false);
    assert_eq!(mine["tier"], "dedicated");
    // No enabled queue: nothing can run, nothing is reserved.
    assert_eq!(mine["capacity"]["desired_concurrency"], 7);
    assert_eq!(mine["capacity"]["applied_concurrency"], 0);

    let pooled = app
        .call(
            Method::PUT,
            &path,
            Some(&app.admin),
            Some(json!({ "reserved_concurrency": null })),
        )
        .await;
    assert_eq!(pooled.body["tier"], "pooled", "{:?}", pooled.body);
    assert_eq!(pooled.body["applied_concurrency"], Value::Null);
}

/// In AWS nothing consumes a queue without its event source mapping, so a queue a publish
/// creates must get one; the local control plane records it the same way.
#[tokio::test]
async fn a_queue_created_by_a_publish_gets_its_consumer_mapping() {
    let app = spawn_app().await;
    let id = app.create_tenant().await;
    let published = app.publish(&id, "fresh", json!({"n": 1})).await;
    assert_eq!(published.status, StatusCode::ACCEPTED);
    let batch = app
        .post(
            &format!("/api/v1/tenants/{id}/messages/batch"),
            &app.admin,
            json!({"messages": [{"queue_name": "fresh-batch", "message_body": 1}]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{:?}", batch.body);
    assert_eq!(batch.body["accepted"], 1);
    let status = app
        .get(&format!("/api/v1/tenants/{id}/consumers"), &app.admin)
        .await;
    for queue in ["fresh", "fresh-batch"] {
        let item = status.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["queue_name"] == queue)
            .unwrap_or_else(|| panic!("{queue} missing: {:?}", status.body));
        assert_eq!(item["mapping"]["state"], "applied", "{queue}: {item}");
        assert_eq!(item["mapping"]["enabled"], true, "{queue}: {item}");
    }
}
