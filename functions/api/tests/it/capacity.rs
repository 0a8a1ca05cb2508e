//! The concurrency budget through the API. Each test has a database of its own: the budget sums
//! every tenant's capacity, so the shared test database's tenants would move its figures.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::{Config, testkit};

use crate::helpers::{Resp, TestApp, spawn_with};

/// An API on a fresh database whose account has `account` concurrency, `stack` of it reserved
/// by the stack's own functions.
async fn app_with_budget(account: u32, stack: u32) -> (TestApp, Config) {
    let own = testkit::own_database("budget").await;
    let url = own.database_url.clone();
    let app = spawn_with(move |c| {
        c.database_url = url;
        c.control.account_concurrency = Some(account);
        c.control.stack_reserved_concurrency = stack;
    })
    .await;
    (app, own)
}

async fn set(app: &TestApp, tenant: &str, capacity: Value) -> Resp {
    app.call(
        Method::PUT,
        &format!("/api/v1/tenants/{tenant}/capacity"),
        Some(&app.admin),
        Some(json!({ "reserved_concurrency": capacity })),
    )
    .await
}

#[tokio::test]
async fn a_capacity_over_the_budget_answers_409_with_the_figures_and_stores_nothing() {
    // 300 - 50 (stack) - 100 (AWS's unreserved minimum) = 150 for tenants.
    let (app, own) = app_with_budget(300, 50).await;
    let (a, b) = (app.create_tenant().await, app.create_tenant().await);

    let first = set(&app, &a, json!(100)).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["tier"], "dedicated");

    let over = set(&app, &b, json!(51)).await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{:?}", over.body);
    assert_eq!(over.code(), "concurrency_budget_exceeded");
    assert_eq!(
        over.body["error"]["budget"],
        json!({
            "account_limit": 300,
            "account_limit_source": "setting",
            "reserved_by_tenants": 100,
            "reserved_by_stack": 50,
            "requested": 51,
            "min_unreserved": 100,
            "available": 50,
        })
    );
    let message = over.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 50"), "{message}");
    // Nothing stored as desired: the tenant stays pooled.
    let shown = app
        .get(&format!("/api/v1/tenants/{b}/capacity"), &app.admin)
        .await;
    assert_eq!(shown.body["tier"], "pooled", "{:?}", shown.body);
    assert_eq!(shown.body["desired_concurrency"], Value::Null);

    // What is left fits; keeping or lowering a capacity at a full budget is never refused.
    assert_eq!(set(&app, &b, json!(50)).await.status, StatusCode::OK);
    assert_eq!(set(&app, &a, json!(100)).await.status, StatusCode::OK);
    assert_eq!(set(&app, &a, json!(90)).await.status, StatusCode::OK);
    assert_eq!(set(&app, &a, json!(101)).await.status, StatusCode::CONFLICT);
    // Back to pooled frees it.
    let pooled = set(&app, &b, Value::Null).await;
    assert_eq!(pooled.body["tier"], "pooled", "{:?}", pooled.body);
    assert_eq!(set(&app, &a, json!(150)).await.status, StatusCode::OK);

    drop(app);
    shared::db::drop_database(&own).await.unwrap();
}

#[tokio::test]
async fn concurrent_capacity_requests_cannot_together_exceed_the_budget() {
    let (app, own) = app_with_budget(300, 50).await;
    let mut tenants = Vec::new();
    for _ in 0..10 {
        tenants.push(app.create_tenant().await);
    }
    // Ten requests of 20 at once against 150: seven fit, whatever the interleaving.
    let answers = futures::future::join_all(tenants.iter().map(|t| set(&app, t, json!(20)))).await;
    let passed = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT && r.code() == "concurrency_budget_exceeded")
        .count();
    assert_eq!((passed, refused), (7, 3));
    let client = app.ctx.db.get().await.unwrap();
    let stored: i64 = client
        .query_one(
            "SELECT COALESCE(SUM(desired_concurrency), 0)::bigint FROM tenant_capacity",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 140);
    drop(client);
    drop(app);
    shared::db::drop_database(&own).await.unwrap();
}
