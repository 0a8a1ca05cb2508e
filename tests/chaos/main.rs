//! `make chaos` and `make soak`: the real binaries on the real PostgreSQL and RabbitMQ, under
//! load from several tenants, with faults injected through the services' own control commands
//! (chaos) or none for a long while (soak). Both are `#[ignore]`d: they restart the services
//! the other tests use, so they run alone (`make chaos`, `make soak`).
//!
//! Settings: `CHAOS_SEED` (default 1), `CHAOS_OVERLAPS` (pairs of overlapping faults after
//! every fault once alone; default 3), `CHAOS_SETTLE` (seconds to wait for every accepted
//! message to settle, and again for the work queues to empty; default 300), `SOAK_DURATION` (seconds; default 1200), and
//! `RELIABILITY_REPORT` (the Markdown file whose section the run rewrites; default
//! docs/RELIABILITY.md).

mod check;
mod endpoint;
mod faults;
mod load;
mod report;
mod soak;
mod system;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use rand::{
    SeedableRng,
    rngs::StdRng,
    seq::{IndexedRandom, SliceRandom},
};
use serde_json::json;

use crate::{
    endpoint::Endpoint,
    faults::{Fault, Targets},
    load::{Load, Plan, Target},
    system::System,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tenants and queues of a run, configured through the API.
pub struct Setup {
    pub targets: Vec<Target>,
    pub doomed_tenant: String,
    pub paused: String,
    pub work_queues: Vec<String>,
}

pub async fn setup(sys: &System, hook: &str) -> Setup {
    let call = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let req = sys
            .http
            .request(method, format!("{}/api/v1{path}", sys.base))
            .bearer_auth(&sys.admin)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    // (tenant, queue, endpoint behaviour, workers, retry attempts)
    let plan = [
        (0, "ok", "ok", 2, 5),
        (0, "flaky", "flaky", 2, 5),
        (1, "slow", "slow", 8, 5),
        (1, "outage", "outage", 2, 2),
        (2, "doomed", "ok", 2, 5),
    ];
    let mut tenants = Vec::new();
    for i in 0..3 {
        let t = call(
            reqwest::Method::POST,
            "/tenants".into(),
            json!({"name": format!("chaos-{i}-{}", uuid::Uuid::new_v4())}),
        )
        .await;
        tenants.push(t["id"].as_str().unwrap().to_string());
    }
    let mut targets = Vec::new();
    let mut work_queues = Vec::new();
    for (t, queue, behaviour, workers, retries) in plan {
        let tenant = &tenants[t];
        call(
            reqwest::Method::PUT,
            format!("/tenants/{tenant}/consumers/{queue}/config"),
            json!({"workers": workers, "retry_attempts": retries, "retry_delay_ms": 200,
                   "endpoint_url": format!("{hook}/{behaviour}")}),
        )
        .await;
        targets.push(Target {
            tenant: tenant.clone(),
            queue: queue.to_string(),
        });
        work_queues.push(format!("tenant.{tenant}.{queue}"));
    }
    // Every tenant has a `default` queue of its own.
    for tenant in &tenants {
        work_queues.push(format!("tenant.{tenant}.default"));
    }
    Setup {
        targets,
        doomed_tenant: tenants[2].clone(),
        paused: format!("{}/consumers/ok", tenants[0]),
        work_queues,
    }
}

/// End-to-end recovery: how long until a message published now to a queue that always
/// succeeds is `completed` (published, relayed if need be, consumed and delivered).
async fn probe(http: &reqwest::Client, base: &str, admin: &str, target: &Target) -> Duration {
    let start = Instant::now();
    let url = format!("{base}/api/v1/tenants/{}/messages", target.tenant);
    let mut id = None;
    while start.elapsed() < Duration::from_secs(300) {
        if id.is_none() {
            let r = http
                .post(&url)
                .bearer_auth(admin)
                .json(&json!({"queue_name": target.queue, "message_body": {"probe": true}}))
                .send()
                .await;
            if let Ok(r) = r
                && r.status().as_u16() == 202
            {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                id = v["id"].as_str().map(str::to_string);
            }
        }
        if let Some(id) = &id {
            let r = http
                .get(format!("{url}/{id}"))
                .bearer_auth(admin)
                .send()
                .await;
            if let Ok(r) = r {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if v["status"] == "completed" {
                    return start.elapsed();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a probe message did not complete within 300 s after a fault");
}

/// One injected fault and what happened around it.
pub struct Window {
    pub faults: Vec<Fault>,
    pub start: Instant,
    pub end: Instant,
    pub recovery: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "restarts PostgreSQL and RabbitMQ: run alone, with `make chaos`"]
async fn chaos() {
    let seed = env_u64("CHAOS_SEED", 1);
    let overlaps = env_u64("CHAOS_OVERLAPS", 3) as usize;
    let settle = Duration::from_secs(env_u64("CHAOS_SETTLE", 300));
    let run = format!("chaos-{seed}-{}", uuid::Uuid::new_v4().simple());
    faults::restore_services().await;
    let endpoint = Endpoint::default();
    let hook = endpoint.start().await;
    let logs = std::env::temp_dir().join(&run);
    let sys = System::start(logs.clone()).await;
    let s = setup(&sys, &hook).await;
    let (base, admin, http) = (sys.base.clone(), sys.admin.clone(), sys.http.clone());
    let sys = Arc::new(tokio::sync::Mutex::new(sys));
    let targets = Targets {
        paused_queue: s.paused.clone(),
        doomed_tenant: s.doomed_tenant.clone(),
        endpoint: endpoint.clone(),
    };

    let load = Load::new();
    let publishers = load.start(Plan {
        publishers: 3,
        seed,
        base: base.clone(),
        admin: admin.clone(),
        run: run.clone(),
        targets: s.targets.clone(),
        pause: Duration::from_millis(80),
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut rng = StdRng::seed_from_u64(seed);
    let mut solo: Vec<Fault> = Fault::ALL.to_vec();
    solo.shuffle(&mut rng);
    let mut schedule: Vec<Vec<Fault>> = solo.into_iter().map(|f| vec![f]).collect();
    let repeatable: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| *f != Fault::TenantDeactivated)
        .collect();
    while schedule.len() < Fault::ALL.len() + overlaps {
        let a = *repeatable.choose(&mut rng).unwrap();
        let b = *repeatable.choose(&mut rng).unwrap();
        if a.target() != b.target() {
            schedule.push(vec![a, b]);
        }
    }
    let mut windows = Vec::new();
    for faults_now in schedule {
        let names: Vec<&str> = faults_now.iter().map(|f| f.name()).collect();
        eprintln!("chaos: {}", names.join(" + "));
        let start = Instant::now();
        let runs = faults_now
            .iter()
            .map(|f| faults::inject(*f, &sys, &targets));
        futures::future::join_all(runs).await;
        let end = Instant::now();
        sys.lock()
            .await
            .wait_healthy(Duration::from_secs(180))
            .await;
        let recovery = probe(&http, &base, &admin, &s.targets[0]).await;
        windows.push(Window {
            faults: faults_now,
            start,
            end,
            recovery,
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    load.stop.store(true, Ordering::SeqCst);
    futures::future::join_all(publishers).await;
    faults::restore_services().await;
    {
        let mut s = sys.lock().await;
        if s.api.is_none() {
            s.start_api().await;
        }
        if s.consumer.is_none() {
            s.start_consumer();
        }
        s.wait_healthy(Duration::from_secs(120)).await;
    }

    // Settle: every accepted message of an active tenant reaches a terminal state.
    let db = sys.lock().await.db().await;
    let settle_start = Instant::now();
    let accepted: Vec<(uuid::Uuid, String)> = load
        .outcomes
        .lock()
        .unwrap()
        .accepted
        .values()
        .filter(|a| a.tenant != s.doomed_tenant)
        .filter_map(|a| Some((a.id.parse().ok()?, a.tenant.clone())))
        .collect();
    let ids: Vec<uuid::Uuid> = accepted.iter().map(|(id, _)| *id).collect();
    loop {
        let statuses = check::statuses(&db, &ids).await;
        let open = statuses
            .values()
            .filter(|(st, _)| !check::TERMINAL.contains(&st.as_str()))
            .count();
        if open == 0 || settle_start.elapsed() > settle {
            eprintln!(
                "chaos: {open} messages open after {:?}",
                settle_start.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled_in = settle_start.elapsed();
    // Copies of settled messages (redeliveries after a kill, relay copies) are still on their
    // way through the consumer, which acknowledges them without processing: wait for the work
    // queues to empty (the broker samples its figures every 5 s).
    let drain_start = Instant::now();
    while drain_start.elapsed() < settle {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let left: u64 = check::broker_queues(&http)
            .await
            .iter()
            .filter(|q| s.work_queues.contains(&q.name) && !q.name.contains(&s.doomed_tenant))
            .map(|q| q.messages_ready + q.messages_unacknowledged)
            .sum();
        if left == 0 {
            break;
        }
        eprintln!("chaos: {left} copies still on the work queues");
    }

    let outcomes = load.outcomes.lock().unwrap().clone();
    let record = endpoint.record.lock().unwrap().clone();
    let expect = check::Expect {
        run: &run,
        doomed_tenant: &s.doomed_tenant,
        may_dead_letter: &["outage"],
        work_queues: &s.work_queues,
    };
    let findings = check::check(&db, &http, &outcomes, &record, &expect).await;
    let health_ok = http
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let consumer_alive = {
        let mut s = sys.lock().await;
        s.consumer
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    };
    let report = report::chaos(
        seed,
        &windows,
        &outcomes,
        &record,
        &findings,
        settled_in,
        health_ok,
        consumer_alive,
    );
    report::write_section("chaos", &report);
    println!("{report}");
    sys.lock().await.stop().await;
    faults::restore_services().await;
    assert!(health_ok, "the API is not healthy at the end");
    assert!(consumer_alive, "the consumer is not running at the end");
    assert!(
        findings.violations.is_empty(),
        "violations: {:#?}\nlogs in {}",
        findings.violations,
        logs.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "runs for SOAK_DURATION (20 minutes by default): run alone, with `make soak`"]
async fn soak() {
    soak::run(Duration::from_secs(env_u64("SOAK_DURATION", 1200))).await;
}
