//! The replay route's input: one selector, bounded, with stable codes; a tenant's token reaches
//! only its own messages; a message not yet settled is skipped, not replayed. (Replays of
//! settled messages through a consumer: functions/consumer/tests/it/replay.rs.)

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn replay_requests_are_validated_and_unsettled_messages_skipped() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let path = format!("/api/v1/tenants/{tenant}/messages/replay");
    let id = uuid::Uuid::now_v7().to_string();
    let too_many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "invalid_replay"),
        (
            json!({"message_ids": [id], "queue_name": "q"}),
            "invalid_replay",
        ),
        (json!({"message_ids": []}), "invalid_replay"),
        (json!({"message_ids": too_many}), "invalid_replay"),
        (json!({"message_ids": ["nope"]}), "invalid_message_id"),
        (
            json!({"queue_name": "q", "from": "2026-01-01T00:00:00Z"}),
            "invalid_replay",
        ),
        (
            json!({"queue_name": "q", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
            "invalid_replay",
        ),
        (
            json!({"queue_name": "q", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "statuses": ["queued"]}),
            "invalid_replay",
        ),
        (
            json!({"queue_name": "q", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "limit": 0}),
            "invalid_replay",
        ),
        (
            json!({"queue_name": "bad name!", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
            "invalid_queue_name",
        ),
        (
            json!({"queue_name": "q", "from": "yesterday", "to": "today"}),
            "invalid_json",
        ),
    ];
    for (body, code) in cases {
        let r = app.post(&path, &app.admin, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{body}: {:?}",
            r.body
        );
    }

    // A message still on its way is not settled: skipped with its status, nothing changed.
    let published = app.publish(&tenant, "jobs", json!({"n": 1})).await;
    let mid = published.body["id"].as_str().unwrap().to_string();
    let token = app.tenant_token(&tenant);
    let r = app.post(&path, &token, json!({"message_ids": [mid]})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["replayed"], 0);
    assert_eq!(r.body["skipped"][0]["id"], mid.as_str());
    assert_eq!(r.body["skipped"][0]["reason"], "queued");

    // Another tenant's token does not reach it: its id is not found there.
    let other = app.create_tenant().await;
    let r = app
        .post(
            &format!("/api/v1/tenants/{other}/messages/replay"),
            &app.tenant_token(&other),
            json!({"message_ids": [mid]}),
        )
        .await;
    assert_eq!(r.body["skipped"][0]["reason"], "not_found");
    let r = app
        .post(
            &path,
            &app.tenant_token(&other),
            json!({"message_ids": [mid]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // A deactivated tenant replays nothing.
    app.call(
        Method::DELETE,
        &format!("/api/v1/tenants/{tenant}"),
        Some(&app.admin),
        None,
    )
    .await;
    let r = app
        .post(&path, &app.admin, json!({"message_ids": [mid]}))
        .await;
    assert_eq!(r.code(), "tenant_inactive");
}
