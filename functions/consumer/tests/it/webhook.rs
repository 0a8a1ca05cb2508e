//! The webhook processor signs each delivery (checked here independently of the signing code)
//! and refuses private addresses unless allowed.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use shared::{
    broker::QueueRef,
    config::WebhookConfig,
    delivery::Builtin,
    delivery::{BatchHandler, Inbound},
    domain::{MessageStatus, QueueName},
};

use crate::helpers::{configure, context, message, publish, tenant};

#[derive(Clone, Default)]
struct Receiver {
    secret: Arc<Mutex<String>>,
    verdicts: Arc<Mutex<Vec<bool>>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let secret = r.secret.lock().unwrap().clone();
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    mac.update(&body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let fresh = (chrono::Utc::now().timestamp() - h("webhook-timestamp").parse::<i64>().unwrap())
        .abs()
        < 60;
    let ok = h("webhook-signature") == expected && fresh;
    r.verdicts.lock().unwrap().push(ok);
    if ok {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn start_receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(hook)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn webhook_config(allow_private: bool) -> WebhookConfig {
    WebhookConfig {
        timeout: Duration::from_secs(5),
        allow_private,
        allow_http: true,
    }
}

#[tokio::test]
async fn deliveries_are_signed_and_private_addresses_refused_unless_allowed() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let receiver = Receiver::default();
    let url = start_receiver(receiver.clone()).await;
    configure(&ctx, t, "hooks", 2, 2, 100, Some(url)).await;
    let cfg = shared::db::consumer_configs::get(&ctx.db, t, "hooks")
        .await
        .unwrap()
        .unwrap();
    *receiver.secret.lock().unwrap() = cfg.signing_secret.clone();
    let queue = QueueRef::new(t, QueueName::parse("hooks").unwrap());

    let signed = publish(&ctx, t, "hooks", json!({"event": "paid", "amount": 10})).await;
    let allowed = BatchHandler::new(
        ctx.clone(),
        Arc::new(Builtin::new(&webhook_config(true)).unwrap()),
    );
    let report = allowed
        .handle(
            &queue,
            &[Inbound {
                message_id: Some(signed.to_string()),
                redelivered: false,
            }],
            std::time::Instant::now() + Duration::from_secs(900),
        )
        .await
        .unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(
        *receiver.verdicts.lock().unwrap(),
        [true],
        "the receiver verified the signature"
    );
    assert_eq!(
        message(&ctx, t, signed).await.status,
        MessageStatus::Completed
    );

    let refused = publish(&ctx, t, "hooks", json!({"event": "refunded"})).await;
    let strict = BatchHandler::new(
        ctx.clone(),
        Arc::new(Builtin::new(&webhook_config(false)).unwrap()),
    );
    let report = strict
        .handle(
            &queue,
            &[Inbound {
                message_id: Some(refused.to_string()),
                redelivered: false,
            }],
            std::time::Instant::now() + Duration::from_secs(900),
        )
        .await
        .unwrap();
    assert_eq!(report.dead_lettered, 1, "{report:?}");
    let m = message(&ctx, t, refused).await;
    assert_eq!(m.status, MessageStatus::DeadLettered);
    assert!(
        m.last_error.unwrap().contains("private"),
        "names the reason"
    );
    assert_eq!(
        receiver.verdicts.lock().unwrap().len(),
        1,
        "nothing was sent to the private address"
    );
}
