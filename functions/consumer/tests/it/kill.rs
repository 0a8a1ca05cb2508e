//! A consumer process killed mid-batch loses nothing: its unacknowledged deliveries return to
//! the queue, and the messages it held are taken over once their lease ends.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use shared::domain::MessageStatus;

use crate::helpers::{configure, context, publish_many, spawn_consumer, tenant, wait_all};

type Seen = Arc<Mutex<Vec<String>>>;

async fn slow_receiver(seen: Seen) -> String {
    async fn hook(State(seen): State<Seen>, headers: HeaderMap) -> &'static str {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = headers
            .get("webhook-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        seen.lock().unwrap().push(id);
        "ok"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(hook)).with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_consumer_killed_mid_batch_loses_nothing() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let seen: Seen = Arc::default();
    let url = slow_receiver(seen.clone()).await;
    configure(&ctx, t, "orders", 3, 3, 100, Some(url)).await;
    let ids = publish_many(&ctx, t, "orders", 20).await;

    let mut first = spawn_consumer(&ctx.config.database_url, &t.to_string());
    // Kill it hard once it is part-way through.
    for _ in 0..200 {
        if seen.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let before_restart = seen.lock().unwrap().len();
    assert!(
        (4..20).contains(&before_restart),
        "killed mid-way ({before_restart} delivered)"
    );

    let mut second = spawn_consumer(&ctx.config.database_url, &t.to_string());
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(60),
    )
    .await;
    second.start_kill().unwrap();

    let delivered: HashSet<String> = seen.lock().unwrap().iter().cloned().collect();
    for id in &ids {
        assert!(
            delivered.contains(&id.to_string()),
            "message {id} reached the endpoint"
        );
    }
}
