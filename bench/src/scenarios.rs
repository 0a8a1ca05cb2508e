//! The scenarios. Every figure comes from this run on this machine; the raw baseline runs at
//! the same concurrency as the API it is compared with.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::{Value, json};
use shared::{
    AppContext, Config,
    auth::{Authenticator, Claims},
    broker::{Outbound, QueueRef},
    domain::{QueueName, TenantId},
};
use tokio::process::Child;

use crate::{
    e2e, load,
    processes::{self, free_port},
    stats::{Summary, summarize},
};

pub struct Bench {
    pub ctx: AppContext,
    pub http: reqwest::Client,
    pub api: String,
    pub admin: String,
    pub quick: bool,
    api_process: Child,
    queues: Vec<QueueRef>,
}

impl Bench {
    /// Migrates the bench database and starts the API process.
    pub async fn start(config: Config, quick: bool) -> anyhow::Result<Self> {
        Self::start_with(config, quick, &[]).await
    }

    /// [`Bench::start`] with more environment for the API process.
    pub async fn start_with(
        config: Config,
        quick: bool,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        shared::db::ensure_database(&config).await?;
        shared::db::migrate(&config).await?;
        let port = free_port();
        let mut api_env = vec![
            ("DATABASE_URL", config.database_url.clone()),
            ("SERVER_PORT", port.to_string()),
            ("DATABASE_MAX_CONNECTIONS", "32".into()),
        ];
        api_env.extend(env.iter().cloned());
        let api_process = processes::spawn("api", &api_env)?;
        let api = format!("http://127.0.0.1:{port}");
        processes::ready(
            &format!("{api}/health"),
            Instant::now(),
            Duration::from_secs(30),
        )
        .await?;
        let admin = Authenticator::hs256(&config.jwt_secret).mint(&Claims::admin("bench", 3600))?;
        let ctx = AppContext::new(config, "bench")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self {
            ctx,
            http,
            api,
            admin,
            quick,
            api_process,
            queues: Vec::new(),
        })
    }

    pub fn secs(&self, full: f64) -> Duration {
        Duration::from_secs_f64(if self.quick {
            (full / 4.0).max(0.5)
        } else {
            full
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.admin)
            .json(body)
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "{path}: {}", resp.status());
        Ok(resp.json().await?)
    }

    /// A fresh tenant whose `queue` has `workers` workers.
    pub async fn tenant(&mut self, queue: &str, workers: u32) -> anyhow::Result<TenantId> {
        let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let t = self
            .call(
                reqwest::Method::POST,
                "/api/v1/tenants",
                &json!({ "name": name }),
            )
            .await?;
        let tenant: TenantId = t["id"].as_str().unwrap_or_default().parse()?;
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/tenants/{tenant}/consumers/{queue}/config"),
            &json!({ "workers": workers }),
        )
        .await?;
        self.queues
            .push(QueueRef::new(tenant, QueueName::parse(queue)?));
        Ok(tenant)
    }

    /// A consumer process for these tenants.
    pub fn consumer(&self, tenants: &[TenantId]) -> anyhow::Result<Child> {
        let list: Vec<String> = tenants.iter().map(ToString::to_string).collect();
        processes::spawn(
            "consumer",
            &[
                ("DATABASE_URL", self.ctx.config.database_url.clone()),
                ("CONSUMER_TENANTS", list.join(",")),
                ("CONSUMER_BATCH_SIZE", "100".into()),
                // A batch of 100 must fit the function timeout (README, "Deadlines and leases"):
                // the benchmark's processor acknowledges at once, so 5 s is ample and one worker fits.
                ("CONSUMER_PROCESSING_TIMEOUT", "5s".into()),
                ("CONSUMER_METRICS_PORT", free_port().to_string()),
                ("CONSUMER_CONFIG_POLL_INTERVAL", "200ms".into()),
            ],
        )
    }

    pub async fn finish(mut self) {
        let _ = self.api_process.kill().await;
        for q in &self.queues {
            self.ctx.brokers.home().broker.delete_queues(q).await;
        }
        self.ctx.brokers.home().broker.close().await;
    }
}

#[derive(Debug, Serialize)]
pub struct Point {
    pub concurrency: usize,
    pub raw: Summary,
    pub api: Summary,
    /// API throughput as a share of the raw baseline's.
    pub ratio: f64,
}

/// Single publishes through the API against the raw baseline, at each concurrency.
pub async fn publish_curve(b: &mut Bench, levels: &[usize]) -> anyhow::Result<Vec<Point>> {
    let tenant = b.tenant("bench", 1).await?;
    // The baseline's rows belong to a tenant of their own, stored as `queued` (where the API's
    // end up), so the outbox relay leaves them alone.
    let raw_tenant = b.tenant("raw", 1).await?;
    let raw_queue = QueueRef::new(raw_tenant, QueueName::parse("raw")?);
    b.ctx.brokers.home().broker.ensure_queue(&raw_queue).await?;
    b.queues.push(raw_queue.clone());
    let mut points = Vec::new();
    for &c in levels {
        let raw = raw_op(b, raw_tenant, &raw_queue, c).await?;
        let api = api_op(b, tenant, c).await?;
        points.push(Point {
            concurrency: c,
            ratio: api.throughput / raw.throughput.max(1e-9),
            raw,
            api,
        });
    }
    Ok(points)
}

/// The same work without the service: INSERT the message row, publish it persistently and
/// wait for the confirm.
async fn raw_op(
    b: &Bench,
    tenant: TenantId,
    queue: &QueueRef,
    concurrency: usize,
) -> anyhow::Result<Summary> {
    let (pool, broker) = (b.ctx.db.clone(), b.ctx.brokers.home().broker.clone());
    let name = Arc::new(shared::broker::work_queue(queue));
    let run = load::closed_loop(concurrency, b.secs(4.0), move || {
        let (pool, broker, name) = (pool.clone(), broker.clone(), name.clone());
        async move {
            let id = uuid::Uuid::now_v7();
            let body = json!({ "n": 1 });
            let client = pool.get().await?;
            let stmt = client
                .prepare_cached(
                    "INSERT INTO messages (id, tenant_id, queue_name, body, headers, status)
                     VALUES ($1, $2, 'raw', $3, '{}', 'queued')",
                )
                .await?;
            client.execute(&stmt, &[&id, &tenant.0, &body]).await?;
            drop(client);
            let bytes = serde_json::to_vec(&body)?;
            let out = Outbound {
                exchange: "",
                queue: &name,
                message_id: id.to_string(),
                body: &bytes,
                headers: Default::default(),
                expiration_ms: None,
            };
            broker
                .publish_confirmed(std::slice::from_ref(&out))
                .await
                .remove(0)?;
            Ok(1)
        }
    })
    .await;
    run.ensure_ok("raw baseline")?;
    Ok(summarize(run.latencies, run.items, run.wall))
}

/// One single publish through the API to the tenant's `queue`.
pub fn publish_fn(
    b: &Bench,
    tenant: TenantId,
    queue: &str,
) -> impl Fn() -> futures::future::BoxFuture<'static, anyhow::Result<usize>> + Send + Sync + 'static
{
    let (http, url, token) = (
        b.http.clone(),
        format!("{}/api/v1/tenants/{tenant}/messages", b.api),
        b.admin.clone(),
    );
    let body = json!({ "queue_name": queue, "message_body": { "n": 1 } });
    move || {
        let req = http.post(&url).bearer_auth(&token).json(&body);
        Box::pin(async move {
            let resp = req.send().await?;
            let status = resp.status();
            if status != reqwest::StatusCode::ACCEPTED {
                anyhow::bail!(
                    "publish: {status} {}",
                    resp.text().await.unwrap_or_default()
                );
            }
            Ok(1)
        })
    }
}

async fn api_op(b: &Bench, tenant: TenantId, concurrency: usize) -> anyhow::Result<Summary> {
    let run = load::closed_loop(concurrency, b.secs(4.0), publish_fn(b, tenant, "bench")).await;
    run.ensure_ok("API publish")?;
    Ok(summarize(run.latencies, run.items, run.wall))
}

/// Single publishes at a fixed rate (open loop): latency when not saturated.
pub async fn publish_at_rate(b: &mut Bench, rate: f64) -> anyhow::Result<Summary> {
    let tenant = b.tenant("bench", 1).await?;
    let run = load::open_loop(rate, b.secs(4.0), publish_fn(b, tenant, "bench")).await;
    run.ensure_ok("publish at rate")?;
    Ok(summarize(run.latencies, run.items, run.wall))
}

/// Batch publishes of `size` messages from 4 clients; throughput counts messages.
pub async fn batch(b: &mut Bench, size: usize) -> anyhow::Result<Summary> {
    let tenant = b.tenant("bench", 1).await?;
    let messages: Vec<Value> = (0..size)
        .map(|i| json!({ "queue_name": "bench", "message_body": { "n": i } }))
        .collect();
    let body = Arc::new(serde_json::to_vec(&json!({ "messages": messages }))?);
    let (http, url, token) = (
        b.http.clone(),
        format!("{}/api/v1/tenants/{tenant}/messages/batch", b.api),
        b.admin.clone(),
    );
    let run = load::closed_loop(4, b.secs(5.0), move || {
        let req = http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.as_ref().clone());
        async move {
            let resp: Value = req.send().await?.json().await?;
            let accepted = resp["accepted"].as_u64().unwrap_or(0) as usize;
            anyhow::ensure!(accepted == size, "batch accepted {accepted} of {size}");
            Ok(accepted)
        }
    })
    .await;
    run.ensure_ok("batch")?;
    Ok(summarize(run.latencies, run.items, run.wall))
}

/// Publishes `n` messages with no consumer running, then starts one and measures the drain.
/// Throughput and latency come from the database's timestamps.
pub async fn drain(b: &mut Bench, n: usize) -> anyhow::Result<Summary> {
    let tenant = b.tenant("drain", 10).await?;
    preload(b, tenant, "drain", n).await?;
    let mut consumer = b.consumer(&[tenant])?;
    e2e::wait_completed(&b.ctx.db, tenant, "drain", n, Duration::from_secs(600)).await?;
    let _ = consumer.kill().await;
    let c = e2e::completion(&b.ctx.db, tenant, "drain").await?;
    anyhow::ensure!(
        c.completed == n && c.total == n,
        "drained {} of {n} ({} stored)",
        c.completed,
        c.total
    );
    // Latency here includes the time spent queued before the consumer started, so report the
    // drain rate with the processing-side span.
    Ok(summarize(c.latencies, c.completed, c.span))
}

async fn preload(b: &Bench, tenant: TenantId, queue: &str, n: usize) -> anyhow::Result<()> {
    let chunk = 1000;
    let mut left = n;
    while left > 0 {
        let size = left.min(chunk);
        let messages: Vec<Value> = (0..size)
            .map(|i| json!({ "queue_name": queue, "message_body": { "n": i } }))
            .collect();
        let r = b
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/tenants/{tenant}/messages/batch"),
                &json!({ "messages": messages }),
            )
            .await?;
        anyhow::ensure!(r["accepted"].as_u64() == Some(size as u64), "preload: {r}");
        left -= size;
    }
    Ok(())
}

/// Messages published at a steady `rate` with the consumer running: end-to-end latency.
pub async fn steady(b: &mut Bench, rate: f64) -> anyhow::Result<Summary> {
    let tenant = b.tenant("steady", 10).await?;
    let mut consumer = b.consumer(&[tenant])?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let run = load::open_loop(rate, b.secs(5.0), publish_fn(b, tenant, "steady")).await;
    run.ensure_ok("steady")?;
    e2e::wait_completed(
        &b.ctx.db,
        tenant,
        "steady",
        run.items,
        Duration::from_secs(120),
    )
    .await?;
    let _ = consumer.kill().await;
    let c = e2e::completion(&b.ctx.db, tenant, "steady").await?;
    Ok(summarize(c.latencies, c.completed, run.wall))
}

#[derive(Debug, Serialize)]
pub struct Neighbours {
    pub alone: Summary,
    pub flooded: Summary,
    pub flood_messages: usize,
}

/// Tenant B publishes at a modest rate, alone and then while tenant A floods its own queue.
pub async fn noisy_neighbour(b: &mut Bench, flood: usize) -> anyhow::Result<Neighbours> {
    let quiet = b.tenant("quiet", 3).await?;
    let noisy = b.tenant("noisy", 10).await?;
    let mut consumer = b.consumer(&[quiet, noisy])?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rate = 50.0;

    let alone_run = load::open_loop(rate, b.secs(4.0), publish_fn(b, quiet, "quiet")).await;
    e2e::wait_completed(
        &b.ctx.db,
        quiet,
        "quiet",
        alone_run.items,
        Duration::from_secs(60),
    )
    .await?;
    let alone = e2e::completion(&b.ctx.db, quiet, "quiet").await?;

    // The flood is published in the background while B keeps its pace.
    let flooder = {
        let (http, url, token) = (
            b.http.clone(),
            format!("{}/api/v1/tenants/{noisy}/messages/batch", b.api),
            b.admin.clone(),
        );
        tokio::spawn(async move {
            let mut left = flood;
            while left > 0 {
                let size = left.min(1000);
                let messages: Vec<Value> = (0..size)
                    .map(|i| json!({ "queue_name": "noisy", "message_body": { "n": i } }))
                    .collect();
                let _ = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({ "messages": messages }))
                    .send()
                    .await;
                left -= size;
            }
        })
    };
    let during = load::open_loop(rate, b.secs(4.0), publish_fn(b, quiet, "quiet")).await;
    let _ = flooder.await;
    e2e::wait_completed(
        &b.ctx.db,
        quiet,
        "quiet",
        alone_run.items + during.items,
        Duration::from_secs(120),
    )
    .await?;
    let all = e2e::completion(&b.ctx.db, quiet, "quiet").await?;
    let _ = consumer.kill().await;
    // The flooded phase's latencies are those not in the alone phase: take the newest ones.
    let mut flooded_latencies = all.latencies;
    let alone_set = alone.latencies.len();
    flooded_latencies.drain(..alone_set.min(flooded_latencies.len()));
    Ok(Neighbours {
        alone: summarize(alone.latencies, alone.completed, alone_run.wall),
        flooded: summarize(flooded_latencies, during.items, during.wall),
        flood_messages: flood,
    })
}
