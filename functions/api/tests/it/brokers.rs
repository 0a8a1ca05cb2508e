//! The broker registry through the API: admin only, validated, and named in tenants. Brokers
//! registered here do not accept new tenants, so the shared test database's other tests keep
//! putting theirs on the default broker; the assignment itself is tested with a database of its
//! own in the consumer's tests (`brokers.rs`).

use reqwest::{Method, StatusCode};
use serde_json::json;
use shared::testkit::unique;

use crate::helpers::spawn_app;

fn broker_id() -> String {
    format!("t{}", &unique("x")[2..14])
}

#[tokio::test]
async fn admins_register_list_show_and_change_brokers() {
    let app = spawn_app().await;
    let id = broker_id();
    let created = app
        .post(
            "/api/v1/brokers",
            &app.admin,
            json!({
                "id": id,
                "amqp_url": "amqp://127.0.0.1:5672/%2f",
                "management_url": "http://127.0.0.1:15672",
                "max_queues": 500,
                "accepting": false
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["id"], id.as_str());
    assert_eq!(created.body["vhost"], "/");
    assert_eq!(created.body["max_queues"], 500);
    assert_eq!(
        (&created.body["tenants"], &created.body["queues"]),
        (&json!(0), &json!(0))
    );

    let again = app
        .post(
            "/api/v1/brokers",
            &app.admin,
            json!({ "id": id, "amqp_url": "amqp://127.0.0.1:5672/%2f" }),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "broker_exists")
    );

    let listed = app.get("/api/v1/brokers", &app.admin).await;
    assert_eq!(listed.status, StatusCode::OK);
    let ids: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"default") && ids.contains(&id.as_str()),
        "{ids:?}"
    );

    let shown = app.get(&format!("/api/v1/brokers/{id}"), &app.admin).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["reachable"], true, "the local broker answers");

    // A tenant an admin places on it says so; the broker counts it.
    let tenant = app
        .post(
            "/api/v1/tenants",
            &app.admin,
            json!({ "name": unique("placed"), "broker": id }),
        )
        .await;
    assert_eq!(tenant.status, StatusCode::CREATED, "{:?}", tenant.body);
    assert_eq!(tenant.body["broker_id"], id.as_str());
    let tid = tenant.body["id"].as_str().unwrap();
    let got = app.get(&format!("/api/v1/tenants/{tid}"), &app.admin).await;
    assert_eq!(got.body["broker_id"], id.as_str());
    let shown = app.get(&format!("/api/v1/brokers/{id}"), &app.admin).await;
    assert_eq!(
        (&shown.body["tenants"], &shown.body["queues"]),
        (&json!(1), &json!(1))
    );

    let changed = app
        .call(
            Method::PUT,
            &format!("/api/v1/brokers/{id}"),
            Some(&app.admin),
            Some(json!({ "amqp_url": "amqp://127.0.0.1:5672/%2f", "max_queues": 1, "accepting": false })),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["max_queues"], 1);
    // Its one queue is its budget: the tenant's next queue is refused, and not stored.
    let refused = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{tid}/consumers/more/config"),
            Some(&app.admin),
            Some(json!({ "workers": 1 })),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "broker_budget_exceeded"),
        "{:?}",
        refused.body
    );
    let queues = app
        .get(&format!("/api/v1/tenants/{tid}/consumers"), &app.admin)
        .await;
    let names: Vec<&str> = queues.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["queue_name"].as_str())
        .collect();
    assert_eq!(names, ["default"], "nothing stored for the refused queue");
}

#[tokio::test]
async fn bad_broker_requests_get_stable_codes_and_change_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({ "id": "Bad_Id", "amqp_url": "amqp://h/%2f" }),
            "invalid_broker",
        ),
        (json!({ "id": broker_id() }), "invalid_broker"),
        (
            json!({ "id": broker_id(), "amqp_url": "amqp://user:secret@h/%2f" }),
            "invalid_broker",
        ),
        (
            json!({ "id": broker_id(), "amqp_url": "http://h/%2f" }),
            "invalid_broker",
        ),
        (
            json!({ "id": broker_id(), "amqp_url": "amqp://h/%2f", "management_url": "http://u:p@h" }),
            "invalid_broker",
        ),
        (
            json!({ "id": broker_id(), "amqp_url": "amqp://h/%2f", "mq_broker_arn": "b-123" }),
            "invalid_broker",
        ),
        (
            json!({ "id": broker_id(), "amqp_url": "amqp://h/%2f", "max_queues": -1 }),
            "invalid_broker",
        ),
        (
            json!({ "id": broker_id(), "amqp_url": "amqp://h/%2f", "colour": "red" }),
            "invalid_json",
        ),
        (
            json!({ "id": "default", "amqp_url": "amqp://h/%2f" }),
            "broker_exists",
        ),
    ];
    for (body, code) in cases {
        let r = app.post("/api/v1/brokers", &app.admin, body.clone()).await;
        assert_eq!(r.code(), code, "{body}: {:?}", r.body);
        if let Some(id) = body["id"].as_str().filter(|id| *id != "default") {
            let gone = app.get(&format!("/api/v1/brokers/{id}"), &app.admin).await;
            assert_eq!(
                gone.code(),
                "broker_not_found",
                "{body}: nothing registered"
            );
        }
    }
    let home_url = app
        .call(
            Method::PUT,
            "/api/v1/brokers/default",
            Some(&app.admin),
            Some(json!({ "amqp_url": "amqp://elsewhere/%2f" })),
        )
        .await;
    assert_eq!(
        home_url.code(),
        "broker_configured",
        "the default broker's URL is configured"
    );
    let unknown = app
        .post(
            "/api/v1/tenants",
            &app.admin,
            json!({ "name": unique("nowhere"), "broker": broker_id() }),
        )
        .await;
    assert_eq!(unknown.code(), "broker_not_found");
    let malformed = app
        .post(
            "/api/v1/tenants",
            &app.admin,
            json!({ "name": unique("bad"), "broker": "nul\u{0}byte" }),
        )
        .await;
    assert_eq!(
        malformed.code(),
        "invalid_broker",
        "checked before any query"
    );

    // Tenants do not see or change the registry.
    let tenant = app.create_tenant().await;
    let token = app.tenant_token(&tenant);
    assert_eq!(
        app.get("/api/v1/brokers", &token).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .post(
            "/api/v1/brokers",
            &token,
            json!({ "id": broker_id(), "amqp_url": "amqp://h/%2f" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// `BROKER_MAX_QUEUES` becomes the home broker's budget at migration (the template sets it from
/// the broker's instance size); unset, it leaves what an admin set.
#[tokio::test]
async fn broker_max_queues_is_written_to_the_home_broker_at_migration() {
    let mut config = shared::testkit::own_database("registry").await;
    let budget = |config: shared::Config| async move {
        let pool = shared::db::pool(&config).unwrap();
        let home = shared::db::brokers::get(&pool, shared::db::brokers::HOME)
            .await
            .unwrap();
        pool.close();
        home.expect("the migration registers the home broker")
            .max_queues
    };
    assert_eq!(
        budget(config.clone()).await,
        None,
        "uncapped until configured"
    );

    config.broker_max_queues = Some(2400);
    shared::db::migrate(&config).await.unwrap();
    assert_eq!(budget(config.clone()).await, Some(2400));

    // Unset: an admin's later change stays.
    config.broker_max_queues = None;
    shared::db::migrate(&config).await.unwrap();
    assert_eq!(budget(config.clone()).await, Some(2400));

    shared::db::drop_database(&config).await.unwrap();
}
