//! The broker budget (issue #14): thousands of tenant queues on one broker through the real
//! path (tenants and queue configs through the API, one message per queue published through
//! the API, drained by a consumer process), with the broker's memory, file descriptors, Erlang
//! processes, sockets and object counts before and after, the per-queue cost of the previous
//! topology measured the same way for comparison, and whether the broker still answers
//! afterwards and after a restart. Every queue it created is deleted at the end.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use serde::Serialize;
use serde_json::{Value, json};
use shared::{
    broker::{Broker, Outbound, QueueRef, stats::management_get, work_queue},
    domain::{QueueName, TenantId},
};

use crate::scenarios::Bench;

/// Queues per tenant (well under the default `TENANT_MAX_QUEUES` of 100).
const QUEUES_PER_TENANT: usize = 4;
/// The management API refreshes node figures every 5 s (`collect_statistics_interval`).
const STATS_SETTLE: Duration = Duration::from_secs(11);

/// The broker node as the management API reports it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BrokerSample {
    pub mem_mib: f64,
    pub fd_used: u64,
    pub sockets_used: u64,
    pub proc_used: u64,
    pub queues: u64,
    pub exchanges: u64,
    pub connections: u64,
    pub channels: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub when: String,
    pub broker: BrokerSample,
}

/// What one tenant queue adds to the broker, each holding one persistent message.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PerQueue {
    pub sample: usize,
    pub broker_queues: f64,
    pub mem_kib: f64,
    pub fds: f64,
    pub procs: f64,
}

#[derive(Debug, Serialize)]
pub struct Restart {
    /// From the restart command to the first AMQP handshake that succeeds.
    pub to_amqp_s: f64,
    /// Until the bench's work queues are all listed again.
    pub to_queues_s: f64,
    pub after: BrokerSample,
    /// A publish through the API and a confirmed publish and count over AMQP after it.
    pub round_trip_ok: bool,
}

#[derive(Debug, Serialize)]
pub struct BrokerBudget {
    pub tenant_queues: usize,
    pub tenants: usize,
    pub declare_publish_s: f64,
    pub drain_s: f64,
    pub completed: usize,
    pub snapshots: Vec<Snapshot>,
    pub current: PerQueue,
    pub previous: PerQueue,
    pub answered_after_ms: f64,
    pub restart: Option<Restart>,
    pub restart_skipped: Option<String>,
}

pub async fn sample(b: &Bench) -> anyhow::Result<BrokerSample> {
    let url = b
        .ctx
        .config
        .rabbitmq_management_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("the broker budget needs RABBITMQ_MANAGEMENT_URL"))?;
    let nodes: Vec<Value> = management_get(&b.ctx.http, url, "/api/nodes", None).await?;
    let node = nodes.first().cloned().unwrap_or_default();
    let overview: Value = management_get(&b.ctx.http, url, "/api/overview", None).await?;
    let totals = &overview["object_totals"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Ok(BrokerSample {
        mem_mib: n(&node["mem_used"]) as f64 / 1_048_576.0,
        fd_used: n(&node["fd_used"]),
        sockets_used: n(&node["sockets_used"]),
        proc_used: n(&node["proc_used"]),
        queues: n(&totals["queues"]),
        exchanges: n(&totals["exchanges"]),
        connections: n(&totals["connections"]),
        channels: n(&totals["channels"]),
    })
}

async fn snapshot(b: &Bench, when: &str, out: &mut Vec<Snapshot>) -> anyhow::Result<BrokerSample> {
    tokio::time::sleep(STATS_SETTLE).await;
    let broker = sample(b).await?;
    eprintln!("    {when}: {broker:?}");
    out.push(Snapshot {
        when: when.into(),
        broker: broker.clone(),
    });
    Ok(broker)
}

fn per_queue(before: &BrokerSample, after: &BrokerSample, n: usize) -> PerQueue {
    let d = |a: u64, b: u64| (b as f64 - a as f64) / n as f64;
    PerQueue {
        sample: n,
        broker_queues: d(before.queues, after.queues),
        mem_kib: (after.mem_mib - before.mem_mib) * 1024.0 / n as f64,
        fds: d(before.fd_used, after.fd_used),
        procs: d(before.proc_used, after.proc_used),
    }
}

pub async fn run(
    b: &mut Bench,
    tenant_queues: usize,
    restart: bool,
) -> anyhow::Result<BrokerBudget> {
    let mut snapshots = Vec::new();
    let before = snapshot(b, "before", &mut snapshots).await?;

    // Tenants and queue configs through the API.
    let tenants_n = tenant_queues.div_ceil(QUEUES_PER_TENANT);
    let names: Vec<String> = (0..QUEUES_PER_TENANT).map(|i| format!("q{i}")).collect();
    let created: Vec<anyhow::Result<TenantId>> = stream::iter(0..tenants_n)
        .map(|_| {
            let names = &names;
            let b = &*b;
            async move {
                let t = b
                    .call(
                        reqwest::Method::POST,
                        "/api/v1/tenants",
                        &json!({ "name": format!("budget-{}", uuid::Uuid::new_v4().simple()) }),
                    )
                    .await?;
                let tenant: TenantId = t["id"].as_str().unwrap_or_default().parse()?;
                for q in names {
                    b.call(
                        reqwest::Method::PUT,
                        &format!("/api/v1/tenants/{tenant}/consumers/{q}/config"),
                        &json!({ "workers": 1 }),
                    )
                    .await?;
                }
                Ok(tenant)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let tenants: Vec<TenantId> = created.into_iter().collect::<anyhow::Result<_>>()?;
    let queues: Vec<QueueRef> = tenants
        .iter()
        .flat_map(|t| {
            names
                .iter()
                .map(|q| QueueRef::new(*t, QueueName::parse(q).expect("valid")))
        })
        .take(tenant_queues)
        .collect();

    // One message to every queue through the API (the first publish declares the queue).
    let started = Instant::now();
    let published: Vec<anyhow::Result<()>> = stream::iter(&queues)
        .map(|q| {
            let (http, url, token) = (
                b.http.clone(),
                format!("{}/api/v1/tenants/{}/messages", b.api, q.tenant_id),
                b.admin.clone(),
            );
            let body =
                json!({ "queue_name": q.queue_name.as_str(), "message_body": { "budget": 1 } });
            async move {
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    resp.status() == reqwest::StatusCode::ACCEPTED,
                    "publish: {}",
                    resp.status()
                );
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    published.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let declare_publish_s = started.elapsed().as_secs_f64();
    let loaded = snapshot(b, "every queue declared, one message each", &mut snapshots).await?;
    let current = per_queue(&before, &loaded, queues.len());

    // Drained by one consumer process holding a consumer on every queue.
    let started = Instant::now();
    let mut consumer = b.consumer(&tenants)?;
    let completed = wait_completed(b, &tenants, queues.len(), Duration::from_secs(600)).await?;
    let drain_s = started.elapsed().as_secs_f64();
    snapshot(b, "drained, a consumer on every queue", &mut snapshots).await?;
    let _ = consumer.kill().await;
    let _ = consumer.wait().await;
    snapshot(b, "consumer stopped", &mut snapshots).await?;
    let answered_after_ms = answers(b).await?;

    let previous = previous_topology(b, tenant_queues.min(500), &mut snapshots).await?;

    let (restart_outcome, restart_skipped) = if restart {
        match restart_broker(b, &queues).await {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("restart failed: {e:#}"))),
        }
    } else {
        (None, Some("not restarted in this run".into()))
    };

    // Clean up: the bench's work queues.
    let ch = b.ctx.brokers.home().broker.channel().await?;
    for q in &queues {
        let _ = ch
            .queue_delete(work_queue(q).as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = ch.close(200, "cleaned".into()).await;
    snapshot(b, "queues deleted", &mut snapshots).await?;
    if let Some(e) = &restart_skipped {
        eprintln!("    {e}");
    }
    Ok(BrokerBudget {
        tenant_queues: queues.len(),
        tenants: tenants.len(),
        declare_publish_s,
        drain_s,
        completed,
        snapshots,
        current,
        previous,
        answered_after_ms,
        restart: restart_outcome,
        restart_skipped,
    })
}

async fn wait_completed(
    b: &Bench,
    tenants: &[TenantId],
    n: usize,
    within: Duration,
) -> anyhow::Result<usize> {
    let ids: Vec<uuid::Uuid> = tenants.iter().map(|t| t.0).collect();
    let until = Instant::now() + within;
    loop {
        let client = b.ctx.db.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM messages WHERE tenant_id = ANY($1) AND status = 'completed'",
                &[&ids],
            )
            .await?;
        let done = row.get::<_, i64>(0) as usize;
        if done >= n {
            return Ok(done);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "drained {done} of {n} in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A new AMQP connection's handshake and a channel round trip, and the management API: ms.
async fn answers(b: &Bench) -> anyhow::Result<f64> {
    let started = Instant::now();
    let fresh = Broker::new(b.ctx.config.rabbitmq_url.clone(), "bench-budget-probe");
    fresh.ping().await?;
    fresh.close().await;
    sample(b).await?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// The previous layout's queues for `n` tenant queues, declared with its arguments: a quorum
/// work queue dead-lettering to a quorum `.dlq`, and one classic retry tier; one persistent
/// message on each work queue, as above. Measured, then deleted.
async fn previous_topology(
    b: &Bench,
    n: usize,
    snapshots: &mut Vec<Snapshot>,
) -> anyhow::Result<PerQueue> {
    let before = snapshot(b, "before the previous topology's sample", snapshots).await?;
    let broker = &b.ctx.brokers.home().broker;
    let ch = broker.channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut names = Vec::new();
    for i in 0..n {
        let work = format!("bench-previous.{}.{i}", uuid::Uuid::new_v4().simple());
        let (dlq, wait) = (format!("{work}.dlq"), format!("{work}.wait.1000"));
        let mut dlq_args = FieldTable::default();
        dlq_args.insert("x-queue-type".into(), text("quorum"));
        ch.queue_declare(dlq.as_str().into(), durable, dlq_args)
            .await?;
        let mut work_args = FieldTable::default();
        work_args.insert("x-queue-type".into(), text("quorum"));
        work_args.insert("x-delivery-limit".into(), AMQPValue::LongInt(1000));
        work_args.insert("x-dead-letter-exchange".into(), text(""));
        work_args.insert("x-dead-letter-routing-key".into(), text(&dlq));
        ch.queue_declare(work.as_str().into(), durable, work_args)
            .await?;
        let mut wait_args = FieldTable::default();
        wait_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1000));
        wait_args.insert("x-dead-letter-exchange".into(), text(""));
        wait_args.insert("x-dead-letter-routing-key".into(), text(&work));
        wait_args.insert("x-expires".into(), AMQPValue::LongLongInt(602_000));
        ch.queue_declare(wait.as_str().into(), durable, wait_args)
            .await?;
        names.push((work, dlq, wait));
    }
    let _ = ch.close(200, "declared".into()).await;
    let bodies: Vec<Outbound> = names
        .iter()
        .map(|(work, _, _)| Outbound {
            exchange: "",
            queue: work,
            message_id: uuid::Uuid::new_v4().to_string(),
            body: b"{}",
            headers: FieldTable::default(),
            expiration_ms: None,
        })
        .collect();
    for chunk in bodies.chunks(200) {
        for r in broker.publish_confirmed(chunk).await {
            r?;
        }
    }
    let loaded = snapshot(b, "the previous topology's sample loaded", snapshots).await?;
    let cost = per_queue(&before, &loaded, n);
    let ch = broker.channel().await?;
    for (work, dlq, wait) in &names {
        for q in [work, dlq, wait] {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    let _ = ch.close(200, "deleted".into()).await;
    Ok(cost)
}

/// Stops the local RabbitMQ node and starts it again through `scripts/services.sh` (which
/// starts it with the open-file limit a node with thousands of queues needs), with the
/// bench's queues still on it.
async fn restart_broker(b: &Bench, queues: &[QueueRef]) -> anyhow::Result<Restart> {
    let script = std::env::current_dir()?.join("scripts/services.sh");
    anyhow::ensure!(script.exists(), "no scripts/services.sh here");
    eprintln!("    restarting RabbitMQ");
    let started = Instant::now();
    let status = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(
            "rabbitmqctl stop >/dev/null 2>&1 || exit 1; \
             for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || break; sleep 1; done; \
             \"$0\" >/dev/null",
        )
        .arg(&script)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "rabbitmqctl stop or services.sh failed");
    let until = Instant::now() + Duration::from_secs(300);
    let probe = Broker::new(b.ctx.config.rabbitmq_url.clone(), "bench-budget-restart");
    while probe.ping().await.is_err() {
        anyhow::ensure!(
            Instant::now() < until,
            "no AMQP handshake within 300 s of a restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let to_amqp_s = started.elapsed().as_secs_f64();
    let mut left = queues.len();
    while left > 0 {
        left = 0;
        for q in queues {
            if probe.ready_count(&work_queue(q)).await?.is_none() {
                left += 1;
            }
        }
        anyhow::ensure!(
            Instant::now() < until,
            "{left} work queues missing after a restart"
        );
        if left > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let to_queues_s = started.elapsed().as_secs_f64();
    let after = {
        tokio::time::sleep(STATS_SETTLE).await;
        sample(b).await?
    };
    // The API reconnects by itself; a publish through it and one over a fresh connection.
    let q = &queues[0];
    let mut api_ok = false;
    for _ in 0..20 {
        let resp = b
            .http
            .post(format!("{}/api/v1/tenants/{}/messages", b.api, q.tenant_id))
            .bearer_auth(&b.admin)
            .json(&json!({ "queue_name": q.queue_name.as_str(), "message_body": { "after": "restart" } }))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::ACCEPTED {
            let body: Value = resp.json().await?;
            api_ok = body["status"] == "queued";
            if api_ok {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let work = work_queue(q);
    let confirmed = probe
        .publish_confirmed(&[Outbound {
            exchange: "",
            queue: &work,
            message_id: uuid::Uuid::new_v4().to_string(),
            body: b"{}",
            headers: FieldTable::default(),
            expiration_ms: None,
        }])
        .await
        .into_iter()
        .all(|r| r.is_ok());
    let counted = probe.ready_count(&work).await?.unwrap_or(0) >= 1;
    probe.close().await;
    Ok(Restart {
        to_amqp_s,
        to_queues_s,
        after,
        round_trip_ok: api_ok && confirmed && counted,
    })
}

impl BrokerBudget {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "### Broker budget: {} tenant queues on one broker\n\n\
             {} tenants with {} queues each, created through the API; one message published to \
             every queue through the API ({:.1} s, which declares each work queue), then drained \
             by one consumer process with a consumer on every queue ({} completed in {:.1} s). \
             Figures are the whole node's, from the management API (other work on the same \
             broker shows in them).\n",
            self.tenant_queues,
            self.tenants,
            QUEUES_PER_TENANT,
            self.declare_publish_s,
            self.completed,
            self.drain_s,
        );
        let _ = writeln!(
            out,
            "| when | memory MiB | file descriptors | sockets | Erlang processes | queues | exchanges | connections | channels |\n|---|---|---|---|---|---|---|---|---|"
        );
        let row = |out: &mut String, when: &str, s: &BrokerSample| {
            let _ = writeln!(
                out,
                "| {when} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
                s.mem_mib,
                s.fd_used,
                s.sockets_used,
                s.proc_used,
                s.queues,
                s.exchanges,
                s.connections,
                s.channels
            );
        };
        for s in &self.snapshots {
            row(&mut out, &s.when, &s.broker);
        }
        if let Some(r) = &self.restart {
            row(&mut out, "after a restart", &r.after);
        }
        let _ = writeln!(
            out,
            "\n**Per tenant queue** (each holding one persistent message):\n\n\
             | topology | sample | broker queues | memory KiB | file descriptors | Erlang processes |\n|---|---|---|---|---|---|"
        );
        for (name, c) in [
            (
                "current: one quorum work queue; retry tiers shared per broker",
                &self.current,
            ),
            (
                "previous: quorum work queue + quorum `.dlq` + a classic wait queue per tier (one tier)",
                &self.previous,
            ),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
                c.sample, c.broker_queues, c.mem_kib, c.fds, c.procs
            );
        }
        let _ = writeln!(
            out,
            "\nAfterwards a new AMQP connection and the management API answered in {:.0} ms.",
            self.answered_after_ms
        );
        match (&self.restart, &self.restart_skipped) {
            (Some(r), _) => {
                let _ = writeln!(
                    out,
                    "RabbitMQ was then restarted (`rabbitmqctl stop`, `scripts/services.sh`) with \
                     the {} queues on it: AMQP handshakes succeeded {:.1} s after the stop, every \
                     work queue was back after {:.1} s, and a publish through the API plus a \
                     confirmed publish and count over AMQP {}.",
                    self.tenant_queues,
                    r.to_amqp_s,
                    r.to_queues_s,
                    if r.round_trip_ok {
                        "succeeded"
                    } else {
                        "**failed**"
                    }
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(out, "No restart: {why}.");
            }
            (None, None) => {}
        }
        let _ = writeln!(out, "The bench's queues were deleted afterwards.");
        out
    }
}

/// Replaces the broker budget's part of docs/BENCHMARKS.md, so the scenario can run alone.
pub fn splice(doc: &str, section: &str) -> String {
    const START: &str = "<!-- broker-budget:start -->";
    const END: &str = "<!-- broker-budget:end -->";
    match (doc.find(START), doc.find(END)) {
        (Some(s), Some(e)) if e > s => {
            format!("{}{START}\n{section}\n{}", &doc[..s], &doc[e..])
        }
        _ => format!("{doc}\n{START}\n{section}\n{END}\n"),
    }
}
