//! The webhook endpoint the chaos run delivers to: one path per behaviour, and a record of
//! every delivery, so overlapping deliveries of one message and duplicates can be counted.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};

#[derive(Clone, Default)]
pub struct Record {
    in_flight: HashMap<String, usize>,
    attempts: HashMap<String, u32>,
    /// Successful deliveries per message.
    pub delivered: HashMap<String, u32>,
    /// Messages delivered to twice at the same moment.
    pub overlapping: Vec<String>,
    pub calls: u64,
    down_until: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct Endpoint {
    pub record: Arc<Mutex<Record>>,
}

impl Endpoint {
    /// Serves on a free loopback port; returns the base URL (`<base>/<behaviour>`).
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route("/{behaviour}", post(deliver))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    /// The `outage` behaviour answers 503 for this long: longer than a queue's retry budget.
    pub fn go_down(&self, outage: Duration) {
        self.record.lock().unwrap().down_until = Some(Instant::now() + outage);
    }
}

/// `ok` answers at once; `flaky` fails each message's first attempt; `slow` takes up to 0.6 s
/// and, for one message in eight, outlasts the delivery timeout on its first attempt; `outage`
/// fails while the endpoint is down.
async fn deliver(
    State(ep): State<Endpoint>,
    Path(behaviour): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (attempt, down) = {
        let mut r = ep.record.lock().unwrap();
        r.calls += 1;
        let n = r.in_flight.entry(id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            r.overlapping.push(id.clone());
        }
        let a = r.attempts.entry(id.clone()).or_default();
        *a += 1;
        let attempt = *a;
        (attempt, r.down_until.is_some_and(|t| Instant::now() < t))
    };
    // Counts the delivery out however it ends: a client that gives up (the delivery timeout)
    // drops this handler mid-way.
    let _leave = Leave(ep.clone(), id.clone());
    let hash = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    let status = match behaviour.as_str() {
        "flaky" if attempt == 1 => StatusCode::SERVICE_UNAVAILABLE,
        "slow" => {
            let long = attempt == 1 && hash % 8 == 0;
            let ms = if long {
                3_000
            } else {
                100 + u64::from(hash % 500)
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            StatusCode::OK
        }
        "outage" if down => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    if status == StatusCode::OK {
        *ep.record.lock().unwrap().delivered.entry(id).or_default() += 1;
    }
    status
}

struct Leave(Endpoint, String);

impl Drop for Leave {
    fn drop(&mut self) {
        if let Some(n) = self.0.record.lock().unwrap().in_flight.get_mut(&self.1) {
            *n -= 1;
        }
    }
}
