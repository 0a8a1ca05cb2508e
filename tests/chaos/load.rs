//! Publishers: several tenants publishing single messages and batches through the API, each
//! request with idempotency keys so that one whose answer was lost (the API killed mid-request)
//! is repeated until it has one. Every answer is recorded: what was accepted (202, or a 202
//! item of a batch) and what was refused.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

/// One tenant queue the load publishes to.
#[derive(Clone, Debug)]
pub struct Target {
    pub tenant: String,
    pub queue: String,
}

#[derive(Clone, Debug)]
pub struct Accepted {
    pub id: String,
    pub tenant: String,
    pub at: Instant,
}

#[derive(Clone, Default)]
pub struct Outcomes {
    /// By sequence number (the `seq` in the body).
    pub accepted: HashMap<u64, Accepted>,
    pub refused: HashMap<u64, (u16, Instant)>,
    /// Requests that never got an answer, however often repeated.
    pub unanswered: Vec<u64>,
    pub latencies_ms: Vec<f64>,
}

/// Who publishes what: `publishers` tasks, each pausing `pause` between requests.
pub struct Plan {
    pub publishers: usize,
    pub seed: u64,
    pub base: String,
    pub admin: String,
    pub run: String,
    pub targets: Vec<Target>,
    pub pause: Duration,
}

pub struct Load {
    pub outcomes: Arc<Mutex<Outcomes>>,
    pub stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
}

impl Load {
    pub fn new() -> Self {
        Self {
            outcomes: Arc::default(),
            stop: Arc::default(),
            seq: Arc::default(),
        }
    }

    /// Starts the plan's publishers.
    pub fn start(&self, plan: Plan) -> Vec<tokio::task::JoinHandle<()>> {
        let Plan {
            publishers,
            seed,
            base,
            admin,
            run,
            targets,
            pause,
        } = plan;
        (0..publishers)
            .map(|p| {
                let ctx = Publisher {
                    http: reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .unwrap(),
                    base: base.clone(),
                    admin: admin.clone(),
                    run: run.clone(),
                    targets: targets.clone(),
                    outcomes: self.outcomes.clone(),
                    stop: self.stop.clone(),
                    seq: self.seq.clone(),
                    pause,
                };
                tokio::spawn(ctx.run(StdRng::seed_from_u64(seed.wrapping_add(p as u64))))
            })
            .collect()
    }
}

struct Publisher {
    http: reqwest::Client,
    base: String,
    admin: String,
    run: String,
    targets: Vec<Target>,
    outcomes: Arc<Mutex<Outcomes>>,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
    pause: Duration,
}

impl Publisher {
    async fn run(self, mut rng: StdRng) {
        while !self.stop.load(Ordering::SeqCst) {
            let target = self.targets[rng.random_range(0..self.targets.len())].clone();
            let n = if rng.random_bool(0.3) {
                rng.random_range(1..=8)
            } else {
                0
            };
            let seqs: Vec<u64> = (0..n.max(1))
                .map(|_| self.seq.fetch_add(1, Ordering::SeqCst))
                .collect();
            self.publish(&target, &seqs, n > 0).await;
            tokio::time::sleep(self.pause).await;
        }
    }

    fn item(&self, target: &Target, seq: u64) -> Value {
        json!({
            "queue_name": target.queue,
            "message_body": {"run": self.run, "seq": seq},
            "idempotency_key": format!("{}-{seq}", self.run),
        })
    }

    async fn publish(&self, target: &Target, seqs: &[u64], batch: bool) {
        let base = format!("{}/api/v1/tenants/{}/messages", self.base, target.tenant);
        let (url, body) = if batch {
            let items: Vec<Value> = seqs.iter().map(|s| self.item(target, *s)).collect();
            (format!("{base}/batch"), json!({ "messages": items }))
        } else {
            let mut one = self.item(target, seqs[0]);
            one.as_object_mut().unwrap().remove("idempotency_key");
            (base, one)
        };
        let key = format!("{}-{}", self.run, seqs[0]);
        // Repeated with the same keys until the API answers (it may be restarting). Once an
        // attempt went unanswered it may have been stored: then only a 202 (a replay) settles
        // the outcome, and a refusal leaves it unknown rather than refused.
        let mut uncertain = false;
        for _ in 0..120 {
            let started = Instant::now();
            let mut req = self.http.post(&url).bearer_auth(&self.admin).json(&body);
            if !batch {
                req = req.header("idempotency-key", &key);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(_) => {
                    uncertain = true;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let Ok(answer) = resp.json::<Value>().await else {
                uncertain = true;
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            };
            if uncertain && status >= 500 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let mut o = self.outcomes.lock().unwrap();
            o.latencies_ms
                .push(started.elapsed().as_secs_f64() * 1000.0);
            let now = Instant::now();
            let accept = |o: &mut Outcomes, seq: u64, id: &Value| {
                o.accepted.insert(
                    seq,
                    Accepted {
                        id: id.as_str().unwrap_or_default().to_string(),
                        tenant: target.tenant.clone(),
                        at: now,
                    },
                );
            };
            match (status, batch) {
                (202, false) => accept(&mut o, seqs[0], &answer["id"]),
                (202, true) => {
                    for (seq, r) in seqs.iter().zip(answer["results"].as_array().unwrap()) {
                        if r["id"].is_string() {
                            accept(&mut o, *seq, &r["id"]);
                        } else {
                            o.refused.insert(*seq, (202, now));
                        }
                    }
                }
                _ if uncertain => o.unanswered.extend(seqs),
                (status, _) => {
                    for seq in seqs {
                        o.refused.insert(*seq, (status, now));
                    }
                }
            }
            return;
        }
        self.outcomes.lock().unwrap().unanswered.extend(seqs);
    }
}
