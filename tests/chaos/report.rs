//! The runs' reports: Markdown sections of docs/RELIABILITY.md (between `<!-- <name>:begin -->`
//! and `<!-- <name>:end -->`), rewritten by each run.

use std::{fmt::Write, time::Duration};

use crate::{Window, check::Findings, endpoint::Record, load::Outcomes};

pub fn report_path() -> std::path::PathBuf {
    std::env::var("RELIABILITY_REPORT")
        .map(Into::into)
        .unwrap_or_else(|_| system_tests::root().join("docs/RELIABILITY.md"))
}

/// Replaces the named section of the report file (creating the file or section if missing).
pub fn write_section(name: &str, body: &str) {
    let path = report_path();
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let section = format!("{begin}\n{body}\n{end}");
    let next = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!("{current}\n{section}\n"),
    };
    std::fs::write(&path, next).unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[allow(clippy::too_many_arguments)]
pub fn chaos(
    seed: u64,
    windows: &[Window],
    o: &Outcomes,
    record: &Record,
    f: &Findings,
    settled_in: Duration,
    health_ok: bool,
    consumer_alive: bool,
) -> String {
    let mut out = String::new();
    let verdict = if f.violations.is_empty() && health_ok && consumer_alive {
        "every invariant held"
    } else {
        "INVARIANTS BROKEN"
    };
    let _ = writeln!(
        out,
        "### Chaos run (seed {seed}): {verdict}\n\n\
         {} publishes accepted, {} refused, {} left without an answer (the API was down for \
         every repeat); {} completed, {} dead-lettered (the `outage` queue, whose endpoint was \
         down longer than its retry budget), {} kept for the deactivated tenant. **Lost: {}. \
         Stuck: {}.** Refused but stored: {}. Overlapping deliveries of one message: {}. \
         Messages delivered more than once: {} ({} extra deliveries, of {} endpoint calls). \
         Work queues left holding messages: {}; stray broker queues: {}. Everything settled \
         {:.0} s after the load stopped; the API {} and the consumer {} at the end.\n",
        f.accepted,
        f.refused,
        f.unanswered,
        f.completed,
        f.dead_lettered,
        f.deactivated_kept,
        f.lost.len(),
        f.stuck.len(),
        f.refused_stored,
        f.overlapping.len(),
        f.duplicated,
        f.extra_deliveries,
        record.calls,
        f.broker_left.len(),
        f.stray_queues.len(),
        settled_in.as_secs_f64(),
        if health_ok {
            "answered healthy"
        } else {
            "was NOT healthy"
        },
        if consumer_alive {
            "was running"
        } else {
            "was NOT running"
        },
    );
    let _ = writeln!(
        out,
        "| fault | lasted | recovered in | accepted during | refused during | lost | delivered twice |\n|---|---|---|---|---|---|---|"
    );
    for w in windows {
        let until = w.end + w.recovery;
        let during: Vec<&str> = o
            .accepted
            .values()
            .filter(|a| a.at >= w.start && a.at <= until)
            .map(|a| a.id.as_str())
            .collect();
        let lost = during
            .iter()
            .filter(|id| f.lost.iter().any(|l| l == *id))
            .count();
        let twice = during
            .iter()
            .filter(|id| record.delivered.get(**id).is_some_and(|n| *n > 1))
            .count();
        let refused = o
            .refused
            .values()
            .filter(|(_, at)| *at >= w.start && *at <= until)
            .count();
        let names: Vec<&str> = w.faults.iter().map(|f| f.name()).collect();
        let _ = writeln!(
            out,
            "| {} | {:.1} s | {:.1} s | {} | {} | {} | {} |",
            names.join(" **+** "),
            (w.end - w.start).as_secs_f64(),
            w.recovery.as_secs_f64(),
            during.len(),
            refused,
            lost,
            twice,
        );
    }
    let mut by_status: std::collections::BTreeMap<u16, usize> = Default::default();
    for (status, _) in o.refused.values() {
        *by_status.entry(*status).or_default() += 1;
    }
    let refusals: Vec<String> = by_status
        .iter()
        .map(|(s, n)| match s {
            202 => format!("{n} batch items"),
            409 => format!("{n} × 409 (the deactivated tenant)"),
            503 => format!("{n} × 503 (a dependency down: nothing stored)"),
            s => format!("{n} × {s}"),
        })
        .collect();
    let _ = writeln!(
        out,
        "\nRefusals: {}.",
        if refusals.is_empty() {
            "none".into()
        } else {
            refusals.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "\n*lasted*: from the injection until it was undone with the service's own command (a \
         killed process restarted, an alarm cleared); *recovered in*: from then until a message \
         published then was delivered and `completed` (end to end); the counts are of \
         publishes answered in that span."
    );
    let mut lat = o.latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let _ = writeln!(
        out,
        "\nPublish latency over the run (faults included): p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms.",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
    if !f.violations.is_empty() {
        let _ = writeln!(out, "\nViolations:\n");
        for v in &f.violations {
            let _ = writeln!(out, "- {v}");
        }
    }
    out
}
