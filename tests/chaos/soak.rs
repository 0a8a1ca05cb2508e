//! `make soak`: the chaos load without faults for a bounded time, sampling every process's
//! memory, the open connections, pool waits and broker depths; memory must stay flat after
//! warm-up. Writes its section of docs/RELIABILITY.md and the picture docs/soak.svg.

use std::{
    fmt::Write,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use crate::{
    endpoint::Endpoint,
    faults,
    load::{Load, Plan},
    report, setup,
    system::System,
};

#[derive(Clone, Debug)]
struct Sample {
    at_s: f64,
    api_rss_mb: f64,
    consumer_rss_mb: f64,
    pg_connections: i64,
    broker_connections: usize,
    depth: u64,
    accepted: usize,
}

fn rss_mb(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or_default()
}

pub async fn run(duration: Duration) {
    faults::restore_services().await;
    let endpoint = Endpoint::default();
    let hook = endpoint.start().await;
    let logs = std::env::temp_dir().join(format!("soak-{}", uuid::Uuid::new_v4().simple()));
    let mut sys = System::start(logs).await;
    let s = setup(&sys, &hook).await;
    let load = Load::new();
    let run = format!("soak-{}", uuid::Uuid::new_v4().simple());
    let publishers = load.start(Plan {
        publishers: 3,
        seed: 7,
        base: sys.base.clone(),
        admin: sys.admin.clone(),
        run: run.clone(),
        targets: s.targets.clone(),
        pause: Duration::from_millis(80),
    });
    let db = sys.db().await;
    let every = Duration::from_secs(10).min(duration / 6);
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < duration {
        tokio::time::sleep(every).await;
        let pg: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&crate::system::DATABASE],
            )
            .await
            .unwrap()
            .get(0);
        let queues = crate::check::broker_queues(&sys.http).await;
        let depth = queues
            .iter()
            .filter(|q| s.work_queues.contains(&q.name))
            .map(|q| q.messages_ready + q.messages_unacknowledged)
            .sum();
        let conns: Vec<serde_json::Value> = shared::broker::stats::management_get(
            &sys.http,
            crate::check::MANAGEMENT,
            "/api/connections",
            Some("columns=name"),
        )
        .await
        .unwrap_or_default();
        let sample = Sample {
            at_s: start.elapsed().as_secs_f64(),
            api_rss_mb: rss_mb(System::pid(&sys.api)),
            consumer_rss_mb: rss_mb(System::pid(&sys.consumer)),
            pg_connections: pg,
            broker_connections: conns.len(),
            depth,
            accepted: load.outcomes.lock().unwrap().accepted.len(),
        };
        eprintln!("soak: {sample:?}");
        samples.push(sample);
    }
    load.stop.store(true, Ordering::SeqCst);
    futures::future::join_all(publishers).await;
    let pool_waits = scrape_pool_waits(&sys).await;
    sys.stop().await;

    // Flat: after the first fifth (warm-up), no process grows past its warm-up peak by more
    // than a quarter plus 16 MB.
    let warm = (samples.len() / 5).max(1);
    let peak = |f: fn(&Sample) -> f64, from: usize, to: usize| {
        samples[from..to].iter().map(f).fold(0.0, f64::max)
    };
    let mut verdicts = Vec::new();
    for (name, f) in [
        ("API", (|s: &Sample| s.api_rss_mb) as fn(&Sample) -> f64),
        ("consumer", |s: &Sample| s.consumer_rss_mb),
    ] {
        let warm_peak = peak(f, 0, warm);
        let later = peak(f, warm, samples.len());
        let flat = later <= warm_peak * 1.25 + 16.0;
        verdicts.push((name, warm_peak, later, flat));
    }
    let body = section(&samples, &verdicts, duration, pool_waits);
    report::write_section("soak", &body);
    let svg = report::report_path().with_file_name("soak.svg");
    std::fs::write(&svg, picture(&samples)).unwrap();
    println!("{body}");
    for (name, warm_peak, later, flat) in verdicts {
        assert!(
            flat,
            "{name} memory grew: {warm_peak:.1} MB after warm-up, {later:.1} MB later"
        );
    }
}

/// The API's pool-wait counter, when its metrics expose one.
async fn scrape_pool_waits(sys: &System) -> Option<String> {
    let text = sys
        .http
        .get(format!("{}/metrics", sys.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("pool") && !l.starts_with('#'))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn section(
    samples: &[Sample],
    verdicts: &[(&str, f64, f64, bool)],
    duration: Duration,
    pool: Option<String>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Soak run: {:.0} minutes of the chaos load, no faults\n",
        duration.as_secs_f64() / 60.0
    );
    for (name, warm, later, flat) in verdicts {
        let _ = writeln!(
            out,
            "- {name} memory: {warm:.1} MB at the end of warm-up, at most {later:.1} MB afterwards: {}.",
            if *flat { "flat" } else { "GROWING" }
        );
    }
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let _ = writeln!(
            out,
            "- {} messages accepted ({:.0}/s); PostgreSQL connections {}..{}, broker connections {}..{}, work queue depth at most {}.",
            last.accepted,
            last.accepted as f64 / last.at_s.max(1.0),
            samples.iter().map(|s| s.pg_connections).min().unwrap_or(0),
            samples.iter().map(|s| s.pg_connections).max().unwrap_or(0),
            samples
                .iter()
                .map(|s| s.broker_connections)
                .min()
                .unwrap_or(0),
            samples
                .iter()
                .map(|s| s.broker_connections)
                .max()
                .unwrap_or(0),
            samples.iter().map(|s| s.depth).max().unwrap_or(0),
        );
        let _ = first;
    }
    if let Some(p) = pool {
        let _ = writeln!(out, "- The API's pool figures at the end:\n\n```\n{p}\n```");
    }
    let _ = writeln!(
        out,
        "\n![memory, connections and depth over the soak run](soak.svg)\n"
    );
    let _ = writeln!(
        out,
        "| at | API RSS | consumer RSS | PG conns | broker conns | depth | accepted |\n|---|---|---|---|---|---|---|"
    );
    let step = (samples.len() / 12).max(1);
    for s in samples.iter().step_by(step) {
        let _ = writeln!(
            out,
            "| {:.0} s | {:.1} MB | {:.1} MB | {} | {} | {} | {} |",
            s.at_s,
            s.api_rss_mb,
            s.consumer_rss_mb,
            s.pg_connections,
            s.broker_connections,
            s.depth,
            s.accepted
        );
    }
    out
}

/// Two charts as one SVG: memory (MB) of both processes, and connections and depth.
fn picture(samples: &[Sample]) -> String {
    let (w, h, pad) = (720.0, 220.0, 40.0);
    let max_t = samples.last().map_or(1.0, |s| s.at_s).max(1.0);
    let chart = |y0: f64, title: &str, series: &[(&str, &str, Vec<f64>)]| {
        let max_v = series
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .fold(1.0, f64::max)
            * 1.1;
        let mut g = format!(
            "<text x='{pad}' y='{}' font-size='13'>{title} (max {max_v:.0})</text>\
             <rect x='{pad}' y='{}' width='{}' height='{}' fill='none' stroke='#999'/>",
            y0 + 14.0,
            y0 + 20.0,
            w - 2.0 * pad,
            h - 40.0
        );
        for (i, (name, colour, values)) in series.iter().enumerate() {
            let points: Vec<String> = samples
                .iter()
                .zip(values)
                .map(|(s, v)| {
                    let x = pad + (s.at_s / max_t) * (w - 2.0 * pad);
                    let y = y0 + 20.0 + (h - 40.0) * (1.0 - v / max_v);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            let _ = write!(
                g,
                "<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>\
                 <text x='{}' y='{}' font-size='12' fill='{colour}'>{name}</text>",
                points.join(" "),
                w - pad - 150.0,
                y0 + 36.0 + 14.0 * i as f64
            );
        }
        g
    };
    let mem = chart(
        0.0,
        "RSS, MB",
        &[
            (
                "API",
                "#1f77b4",
                samples.iter().map(|s| s.api_rss_mb).collect(),
            ),
            (
                "consumer",
                "#d62728",
                samples.iter().map(|s| s.consumer_rss_mb).collect(),
            ),
        ],
    );
    let other = chart(
        h,
        "connections and work queue depth",
        &[
            (
                "PostgreSQL connections",
                "#2ca02c",
                samples.iter().map(|s| s.pg_connections as f64).collect(),
            ),
            (
                "broker connections",
                "#9467bd",
                samples
                    .iter()
                    .map(|s| s.broker_connections as f64)
                    .collect(),
            ),
            (
                "depth",
                "#ff7f0e",
                samples.iter().map(|s| s.depth as f64).collect(),
            ),
        ],
    );
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{}' font-family='sans-serif'>\
         <rect width='100%' height='100%' fill='white'/>{mem}{other}\
         <text x='{pad}' y='{}' font-size='12'>time, 0 to {max_t:.0} s</text></svg>\n",
        2.0 * h + 20.0,
        2.0 * h + 14.0
    )
}
