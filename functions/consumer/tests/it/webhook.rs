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
        response_excerpt_bytes: 1024,
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

/// An endpoint for the attempt records: `/fail` answers 500 with a long body whose bound falls
/// inside a two-byte character, `/ok` 200, `/slow` nothing before the delivery timeout, and
/// `/endless` 500 with a body that never ends (counting the bytes it sent).
async fn start_answers(sent: Arc<std::sync::atomic::AtomicUsize>) -> String {
    use axum::{body::Body, response::IntoResponse, routing::post};
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let endless = move || {
        let sent = sent.clone();
        async move {
            let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
            let stream = futures::stream::repeat_with(move || {
                sent.fetch_add(chunk.len(), Ordering::SeqCst);
                Ok::<_, std::io::Error>(chunk.clone())
            });
            (StatusCode::INTERNAL_SERVER_ERROR, Body::from_stream(stream)).into_response()
        }
    };
    let app = Router::new()
        .route(
            "/fail",
            post(|| async {
                let body = format!("x{}", "é".repeat(3000));
                (StatusCode::INTERNAL_SERVER_ERROR, body)
            }),
        )
        .route("/ok", post(|| async { (StatusCode::OK, "accepted") }))
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                StatusCode::OK
            }),
        )
        .route("/endless", post(endless));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// Each attempt keeps the endpoint's status, its duration and the first bytes of its answer,
/// bounded and cut on a character boundary; a transport error keeps its error and no status.
#[tokio::test]
async fn attempts_record_the_status_duration_and_an_excerpt_of_the_answer() {
    use shared::services::messages::view;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let base = start_answers(sent.clone()).await;
    let delivery_timeout = Duration::from_secs(2);
    let handler = BatchHandler::new(
        ctx.clone(),
        Arc::new(
            Builtin::new(&WebhookConfig {
                timeout: delivery_timeout,
                response_excerpt_bytes: 64,
                ..webhook_config(true)
            })
            .unwrap(),
        ),
    );
    let run = |queue: &'static str, path: &'static str| {
        let (ctx, handler, base) = (ctx.clone(), &handler, base.clone());
        async move {
            configure(&ctx, t, queue, 1, 3, 100, Some(format!("{base}{path}"))).await;
            let id = publish(&ctx, t, queue, json!({"path": path})).await;
            let queue = QueueRef::new(t, QueueName::parse(queue).unwrap());
            let inbound = Inbound {
                message_id: Some(id.to_string()),
                redelivered: false,
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(900);
            handler.handle(&queue, &[inbound], deadline).await.unwrap();
            let mut attempts = shared::db::attempts::list(&ctx.db, t, id).await.unwrap();
            assert_eq!(attempts.len(), 1, "{attempts:?}");
            let shown = view(&ctx, t, id).await.unwrap();
            let last = shown
                .last_attempt
                .expect("the view shows the latest attempt");
            assert_eq!(last.attempt, attempts[0].attempt);
            assert_eq!(last.response_excerpt, attempts[0].response_excerpt);
            (shown.message.status, attempts.remove(0))
        }
    };

    // 500 with a body: the status, a duration, the excerpt cut at 64 bytes. "x" and 31 "é"
    // are 63 bytes; the 64th is the first half of the next "é", which is dropped.
    let (status, a) = run("fails", "/fail").await;
    assert_eq!(status, MessageStatus::Retrying);
    assert_eq!(a.outcome.as_deref(), Some("retrying"));
    assert_eq!(a.http_status, Some(500));
    assert!(a.duration_ms.is_some_and(|d| d >= 0), "{a:?}");
    assert_eq!(
        a.response_excerpt.as_deref(),
        Some(format!("x{}", "é".repeat(31)).as_str())
    );
    assert!(a.error.unwrap().contains("500"));

    // Success: 2xx and its answer.
    let (status, a) = run("succeeds", "/ok").await;
    assert_eq!(status, MessageStatus::Completed);
    assert_eq!(a.outcome.as_deref(), Some("completed"));
    assert_eq!(a.http_status, Some(200));
    assert_eq!(a.response_excerpt.as_deref(), Some("accepted"));
    assert!(a.duration_ms.is_some());

    // A timeout: no status, the error, and a duration of about the delivery timeout.
    let (status, a) = run("times-out", "/slow").await;
    assert_eq!(status, MessageStatus::Retrying);
    assert_eq!(a.http_status, None);
    assert_eq!(a.response_excerpt, None);
    assert_eq!(a.error.as_deref(), Some("endpoint timed out"));
    let ms = a.duration_ms.unwrap();
    assert!(
        (1900..4000).contains(&ms),
        "about the 2 s timeout, not the endpoint's 5 s: {ms}"
    );

    // A body that never ends: only the excerpt's bytes are read, so the attempt ends at once
    // with the status instead of reading until the timeout.
    let (_, a) = run("endless", "/endless").await;
    assert_eq!(a.http_status, Some(500));
    assert_eq!(a.response_excerpt.as_deref(), Some(&"z".repeat(64)[..]));
    let ms = a.duration_ms.unwrap();
    assert!(ms < 1000, "the body was not read to the timeout: {ms} ms");
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < 64 << 20,
        "the endpoint sent only what buffers held: {sent} bytes"
    );
}
