//! The benchmark's own correctness (not its speed): it counts completed messages exactly, and
//! its latencies come from the database's real timestamps.

use std::time::Duration;

use bench::{e2e, scenarios::Bench, stats::summarize};
use shared::{domain::TenantName, testkit};

#[tokio::test]
async fn completion_counts_exactly_and_reads_real_timestamps() {
    let config = testkit::test_config();
    let ctx = testkit::context(config, "bench-test").await;
    let tenant = shared::services::tenants::create(
        &ctx,
        &TenantName::parse(&testkit::unique("bench")).unwrap(),
        None,
    )
    .await
    .unwrap()
    .id;
    let client = ctx.db.get().await.unwrap();
    // 10 messages, 7 completed with latencies of exactly 100, 200, ... 700 ms.
    for i in 0..10i64 {
        let completed = i < 7;
        client
            .execute(
                "INSERT INTO messages (id, tenant_id, queue_name, body, status, created_at, completed_at)
                 VALUES ($1, $2, 'q', '1', $3, '2026-01-01T00:00:00Z',
                         CASE WHEN $4 THEN '2026-01-01T00:00:00Z'::timestamptz + make_interval(secs => $5) END)",
                &[&uuid::Uuid::now_v7(), &tenant.0, &(if completed { "completed" } else { "queued" }), &completed, &((i + 1) as f64 / 10.0)],
            )
            .await
            .unwrap();
    }
    let c = e2e::completion(&ctx.db, tenant, "q").await.unwrap();
    assert_eq!((c.completed, c.total), (7, 10));
    let mut ms: Vec<u128> = c.latencies.iter().map(Duration::as_millis).collect();
    ms.sort();
    assert_eq!(ms, [100, 200, 300, 400, 500, 600, 700]);
    let s = summarize(c.latencies, c.completed, Duration::from_secs(1));
    assert_eq!((s.p50_ms, s.p99_ms, s.throughput), (400.0, 700.0, 7.0));
}

#[tokio::test]
async fn a_short_drain_completes_every_message_it_published() {
    // The scenario runs the real API and consumer binaries of this build (built as `make run`
    // and the system tests build them, so all share one feature set and one build).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--workspace", "--bins"])
        .status()
        .unwrap();
    assert!(built.success());
    let config = testkit::test_config();
    testkit::prepare_database(&config).await;
    let mut b = Bench::start(config, true).await.unwrap();
    let n = 300;
    let s = bench::scenarios::drain(&mut b, n).await.unwrap();
    b.finish().await;
    assert_eq!(s.count, n, "every published message counted once");
    assert!(
        s.p50_ms > 0.0 && s.p99_ms >= s.p50_ms && s.p99_ms < 120_000.0,
        "{s:?}"
    );
    assert!(s.throughput > 0.0);
}
