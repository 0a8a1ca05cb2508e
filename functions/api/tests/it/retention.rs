//! Retention: the settings through the API, and the sweep against backdated rows: it deletes
//! settled messages past their tenant's retention (with their attempts, freeing their
//! idempotency keys) and nothing else, in bounded batches.

use reqwest::{Method, StatusCode};
use serde_json::json;
use shared::services::retention;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app, spawn_with};

#[tokio::test]
async fn the_tenant_shows_its_retention_and_an_admin_sets_it() {
    let app = spawn_app().await;
    let t = app.create_tenant().await;
    let shown = app.get(&format!("/api/v1/tenants/{t}"), &app.admin).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(
        shown.body["retention"],
        json!({"completed_days": 7, "dead_lettered_days": 30,
               "overrides": {"completed_days": null, "dead_lettered_days": null}})
    );

    let path = format!("/api/v1/tenants/{t}/retention");
    let put = |body| app.call(Method::PUT, &path, Some(&app.admin), Some(body));
    let r = put(json!({"completed_days": 1, "dead_lettered_days": 0})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["completed_days"], 1);
    assert_eq!(r.body["dead_lettered_days"], 0);
    // A tenant's own token sees it.
    let own = app.tenant_token(&t);
    let shown = app.get(&format!("/api/v1/tenants/{t}"), &own).await;
    assert_eq!(shown.body["retention"]["completed_days"], 1);
    assert_eq!(
        shown.body["retention"]["overrides"],
        json!({"completed_days": 1, "dead_lettered_days": 0})
    );
    // Absent fields take the default again.
    let r = put(json!({"dead_lettered_days": 90})).await;
    assert_eq!(
        (
            r.body["completed_days"].clone(),
            r.body["dead_lettered_days"].clone()
        ),
        (json!(7), json!(90))
    );

    for bad in [
        json!({"completed_days": 3651}),
        json!({"dead_lettered_days": -1}),
        json!({"completed_days": 1.5}),
        json!({"keep": 3}),
    ] {
        let r = put(bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
    }
    assert_eq!(
        put(json!({"completed_days": 3651})).await.code(),
        "invalid_retention"
    );

    let r = app
        .call(
            Method::PUT,
            &path,
            Some(&own),
            Some(json!({"completed_days": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "admin only");

    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/{t}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = put(json!({"completed_days": 2})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "tenant_inactive")
    );
    let shown = app.get(&format!("/api/v1/tenants/{t}"), &app.admin).await;
    assert_eq!(
        shown.body["retention"]["dead_lettered_days"], 90,
        "unchanged"
    );

    let unknown = Uuid::new_v4();
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{unknown}/retention"),
            Some(&app.admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "tenant_not_found")
    );
}

/// Stores `n` messages of the tenant in `status`, settled `age_days` ago (every timestamp
/// backdated), each with two attempts. Returns their ids.
async fn backdated(
    app: &TestApp,
    tenant: Uuid,
    status: &str,
    age_days: i32,
    n: i32,
    key: Option<&str>,
) -> Vec<Uuid> {
    let client = app.ctx.db.get().await.unwrap();
    let rows = client
        .query(
            "WITH m AS (
                 INSERT INTO messages (id, tenant_id, queue_name, body, status, idempotency_key,
                     attempts, total_attempts, created_at, updated_at, completed_at,
                     dead_lettered_at, next_attempt_at)
                 SELECT gen_random_uuid(), $1, 'kept', '{}', $2, $5, 2, 2,
                     now() - make_interval(days => $3 + 1), now() - make_interval(days => $3),
                     now() - make_interval(days => $3), now() - make_interval(days => $3),
                     now() - make_interval(days => $3)
                 FROM generate_series(1, $4)
                 RETURNING id),
             a AS (
                 INSERT INTO message_attempts (message_id, attempt, tenant_id, queue_name,
                     started_at, finished_at, outcome, http_status, duration_ms)
                 SELECT m.id, g, $1, 'kept', now() - make_interval(days => $3),
                     now() - make_interval(days => $3), 'retrying', 500, 12
                 FROM m CROSS JOIN generate_series(1, 2) g)
             SELECT id FROM m",
            &[&tenant, &status, &age_days, &n, &key],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// How many of these messages, and of their attempts, are still stored.
async fn stored(app: &TestApp, ids: &[Uuid]) -> (i64, i64) {
    let client = app.ctx.db.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM messages WHERE id = ANY($1)),
                    (SELECT count(*) FROM message_attempts WHERE message_id = ANY($1))",
            &[&ids],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn retention_deletes_settled_messages_past_their_tenants_retention_and_nothing_else() {
    let app = spawn_with(|c| {
        c.retention.batch = 10;
        c.retention.max_batches = 2;
    })
    .await;
    let id = |s: String| s.parse::<Uuid>().unwrap();
    // a: the defaults (7 and 30 days); b: completed kept 1 day; c: everything for ever.
    let (a, b, c) = (
        id(app.create_tenant().await),
        id(app.create_tenant().await),
        id(app.create_tenant().await),
    );
    for (t, body) in [
        (b, json!({"completed_days": 1})),
        (c, json!({"completed_days": 0, "dead_lettered_days": 0})),
    ] {
        let r = app
            .call(
                Method::PUT,
                &format!("/api/v1/tenants/{t}/retention"),
                Some(&app.admin),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    let mut doomed = backdated(&app, a, "completed", 8, 24, None).await;
    doomed.extend(backdated(&app, a, "dead_lettered", 31, 3, None).await);
    doomed.extend(backdated(&app, b, "completed", 2, 2, None).await);
    let keyed = backdated(&app, a, "completed", 8, 1, Some("order-1")).await;
    doomed.extend(&keyed);

    let mut kept = backdated(&app, a, "completed", 6, 2, None).await;
    kept.extend(backdated(&app, a, "dead_lettered", 29, 2, None).await);
    kept.extend(backdated(&app, b, "dead_lettered", 2, 2, None).await);
    kept.extend(backdated(&app, c, "completed", 1000, 2, None).await);
    kept.extend(backdated(&app, c, "dead_lettered", 1000, 2, None).await);
    // Never deleted, however old their timestamps: not settled.
    for status in ["pending", "queued", "processing", "retrying"] {
        kept.extend(backdated(&app, a, status, 400, 2, None).await);
    }
    assert_eq!(stored(&app, &doomed).await, (30, 60));

    // Bounded: 2 batches of 10 per status and sweep at most, so 30 due messages need a second
    // sweep (other tests' due rows, if any, only make that more so).
    let first = retention::sweep(&app.ctx).await.unwrap();
    assert!(first.batches <= 4, "{first:?}");
    assert!(first.messages <= 40, "{first:?}");
    let (left, _) = stored(&app, &doomed).await;
    assert!(
        left > 0,
        "24 + 1 + 2 completed messages are due, one sweep takes 20 of them"
    );
    let mut sweeps = 1;
    loop {
        let r = retention::sweep(&app.ctx).await.unwrap();
        assert!(r.messages <= 40 && r.batches <= 4, "{r:?}");
        sweeps += 1;
        if stored(&app, &doomed).await == (0, 0) || sweeps > 20 {
            break;
        }
    }
    assert_eq!(
        stored(&app, &doomed).await,
        (0, 0),
        "due messages and their attempts"
    );
    assert_eq!(
        stored(&app, &kept).await,
        (kept.len() as i64, 2 * kept.len() as i64),
        "nothing else"
    );

    // The deleted message's idempotency key is free: the same key stores a new message.
    let r = app
        .call_with(
            Method::POST,
            &format!("/api/v1/tenants/{a}/messages"),
            Some(&app.admin),
            Some(json!({"queue_name": "kept", "message_body": {"again": true}})),
            &[("Idempotency-Key", "order-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["idempotent_replay"], false);
    assert_ne!(r.body["id"], json!(keyed[0].to_string()));
}
