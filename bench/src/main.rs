//! `make bench`: runs every scenario against this machine's PostgreSQL and RabbitMQ with the
//! release binaries, prints the tables, and writes docs/benchmarks.json and the results part of
//! docs/BENCHMARKS.md. Every scenario runs twice: on a database the run has just created (what a
//! new deployment sees) and on the same database once it holds that data. `--quick` shortens
//! every phase (a smoke run).

use std::path::PathBuf;

use bench::{
    broker_budget, database, large,
    report::{Machine, Pass, Report, splice},
    scenarios::{self, Bench},
    startup,
};
use shared::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let out = PathBuf::from(std::env::var("BENCH_OUT").unwrap_or_else(|_| "docs".into()));
    let mut config = Config::from_env()?;
    if std::env::var("DATABASE_URL").is_err() {
        config.database_url = format!("postgres://postgres@127.0.0.1:5432/{}", database::PREFIX);
    }
    shared::observability::telemetry::init(&config);

    if std::env::var("BENCH_ONLY").as_deref() == Ok("large") {
        return large_tables(&config, quick, &out).await;
    }
    // A database created now, as a new deployment's is: the first pass runs on it as it is,
    // the second on the same database once it holds the first pass's data.
    database::drop_bench_database(&config).await?;
    let mut b = Bench::start(config.clone(), quick).await?;
    let machine = machine(&b).await;
    if std::env::var("BENCH_ONLY").as_deref() == Ok("broker") {
        let budget = broker_budget(&mut b, quick).await;
        b.finish().await;
        write_broker_budget(&out, &budget?)?;
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("drain") {
        let s = scenarios::drain(&mut b, if quick { 5_000 } else { 50_000 }).await?;
        println!("drain: {:.0} msg/s over {} messages", s.throughput, s.count);
        b.finish().await;
        return Ok(());
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("publish") {
        for pass in ["new database", "warm database"] {
            let state = database::describe(&database::table_stats(&b.ctx.db).await?);
            for p in scenarios::publish_curve(&mut b, &[1, 4, 16, 64]).await? {
                println!(
                    "{pass}: c={} raw={:.0}/s api={:.0}/s ratio={:.0}% ({state})",
                    p.concurrency,
                    p.raw.throughput,
                    p.api.throughput,
                    p.ratio * 100.0
                );
            }
        }
        b.finish().await;
        return Ok(());
    }
    let steady_rate = 500.0;
    eprintln!("pass 1: the database the run just created");
    let new_database = pass(&mut b, steady_rate).await?;
    eprintln!("pass 2: the same database, holding pass 1's data");
    let warm = pass(&mut b, steady_rate).await?;
    eprintln!("broker budget");
    let budget = broker_budget(&mut b, quick).await;
    b.finish().await;
    let budget = budget?;
    eprintln!("function start");
    let mut starts = Vec::new();
    for binary in ["api", "consumer"] {
        starts.push(startup::local(binary, &config.database_url).await?);
        starts.push(startup::lambda(binary, &config.database_url).await?);
    }

    let mut report = Report {
        machine,
        new_database,
        warm,
        steady_rate,
        starts,
        targets: Vec::new(),
    };
    report.evaluate();
    let md = report.markdown();
    println!("{md}");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("benchmarks.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let doc_path = out.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&doc_path, splice(&doc, &md))?;
    write_broker_budget(&out, &budget)?;
    large_tables(&config, quick, &out).await?;
    eprintln!(
        "wrote {} and {}",
        doc_path.display(),
        out.join("benchmarks.json").display()
    );
    Ok(())
}

/// The large-table scenario on a database of its own (`<name>_large`), dropped first and left
/// behind for inspection; `LARGE_MESSAGES` sets the size (5,000,000; 200,000 with `--quick`).
/// Writes its section of docs/BENCHMARKS.md and docs/large-tables.json.
///
/// The API runs without the relay tick (`RELAY_ENABLED=false`) in both phases: the scenario
/// runs the retention sweep itself to time it, and the tick would sweep the same rows.
async fn large_tables(config: &Config, quick: bool, out: &std::path::Path) -> anyhow::Result<()> {
    let messages: i64 = match std::env::var("LARGE_MESSAGES") {
        Ok(v) => v.parse()?,
        Err(_) if quick => 200_000,
        Err(_) => 5_000_000,
    };
    let mut config = config.clone();
    config.database_url = format!("{}_large", config.database_url);
    database::drop_bench_database(&config).await?;
    let mut b = Bench::start_with(config, quick, &[("RELAY_ENABLED", "false".into())]).await?;
    let report = large::run(&mut b, messages).await;
    b.finish().await;
    let report = report?;
    let md = report.markdown();
    println!("{md}");
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("large-tables.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let doc_path = out.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&doc_path, large::splice(&doc, &md))?;
    Ok(())
}

/// `BENCH_QUEUES` tenant queues (2,000; 200 with `--quick`) on the local broker. The full run
/// restarts RabbitMQ at the end of the scenario, `--quick` does not; `BENCH_RESTART_BROKER=0`
/// or `1` says otherwise.
async fn broker_budget(b: &mut Bench, quick: bool) -> anyhow::Result<broker_budget::BrokerBudget> {
    let queues = match std::env::var("BENCH_QUEUES") {
        Ok(v) => v.parse()?,
        Err(_) if quick => 200,
        Err(_) => 2_000,
    };
    let restart = match std::env::var("BENCH_RESTART_BROKER").as_deref() {
        Ok("0") => false,
        Ok(_) => true,
        Err(_) => !quick,
    };
    broker_budget::run(b, queues, restart).await
}

/// The broker budget's section of docs/BENCHMARKS.md and docs/broker-budget.json.
fn write_broker_budget(
    out: &std::path::Path,
    budget: &broker_budget::BrokerBudget,
) -> anyhow::Result<()> {
    let md = budget.markdown();
    println!("{md}");
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("broker-budget.json"),
        serde_json::to_string_pretty(budget)?,
    )?;
    let doc_path = out.join("BENCHMARKS.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|_| "# Benchmarks\n".into());
    std::fs::write(&doc_path, broker_budget::splice(&doc, &md))?;
    Ok(())
}

/// Every scenario once, on the database as it is now.
async fn pass(b: &mut Bench, steady_rate: f64) -> anyhow::Result<Pass> {
    let before = database::table_stats(&b.ctx.db).await?;
    eprintln!("  statistics: {}", database::describe(&before));
    eprintln!("  single publish: API against the raw baseline");
    let publish = scenarios::publish_curve(b, &[1, 4, 16, 64]).await?;
    let peak = publish.iter().map(|p| p.api.throughput).fold(0.0, f64::max);
    eprintln!("  half-peak latency at {:.0}/s", peak / 2.0);
    let half_peak = scenarios::publish_at_rate(b, peak / 2.0).await?;
    eprintln!("  batch publish");
    let batch_100 = scenarios::batch(b, 100).await?;
    let batch_1000 = scenarios::batch(b, 1000).await?;
    let backlog = if b.quick { 5_000 } else { 50_000 };
    eprintln!("  end to end: draining {backlog}");
    let drain = scenarios::drain(b, backlog).await?;
    eprintln!("  end to end at {steady_rate}/s");
    let steady = scenarios::steady(b, steady_rate).await?;
    eprintln!("  noisy neighbour");
    let neighbours = scenarios::noisy_neighbour(b, if b.quick { 5_000 } else { 30_000 }).await?;
    let after = database::table_stats(&b.ctx.db).await?;
    Ok(Pass {
        before,
        after,
        publish,
        half_peak,
        batch_100,
        batch_1000,
        drain,
        steady,
        neighbours,
    })
}

async fn machine(b: &Bench) -> Machine {
    let postgres = match b.ctx.db.get().await {
        Ok(c) => c
            .query_one("SHOW server_version", &[])
            .await
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let rabbitmq = rabbitmq_version(b)
        .await
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        rustc,
        postgres,
        rabbitmq,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        quick: b.quick,
    }
}

/// From the management API's overview.
async fn rabbitmq_version(b: &Bench) -> Option<String> {
    let url = b.ctx.config.rabbitmq_management_url.as_deref()?;
    let overview: serde_json::Value =
        shared::broker::stats::management_get(&b.ctx.http, url, "/api/overview", None)
            .await
            .ok()?;
    overview["rabbitmq_version"].as_str().map(str::to_string)
}
