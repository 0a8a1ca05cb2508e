//! The invariants a chaos run must hold, read from PostgreSQL, the broker and the endpoint's
//! record once the load stopped and the system settled.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use shared::broker::stats::management_get;

use crate::{endpoint::Record, load::Outcomes};

pub const TERMINAL: [&str; 2] = ["completed", "dead_lettered"];

/// Where each accepted message ended, by id.
pub async fn statuses(
    db: &tokio_postgres::Client,
    ids: &[uuid::Uuid],
) -> HashMap<uuid::Uuid, (String, String)> {
    db.query(
        "SELECT id, status, queue_name FROM messages WHERE id = ANY($1)",
        &[&ids],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect()
}

/// How many refused requests' messages are stored anyway (must be none).
pub async fn refused_but_stored(db: &tokio_postgres::Client, run: &str, refused: &[i64]) -> i64 {
    db.query_one(
        "SELECT count(*) FROM messages
         WHERE body->>'run' = $1 AND (body->>'seq')::bigint = ANY($2)",
        &[&run, &refused],
    )
    .await
    .unwrap()
    .get(0)
}

#[derive(Deserialize)]
pub struct BrokerQueue {
    pub name: String,
    #[serde(default)]
    pub messages_ready: u64,
    #[serde(default)]
    pub messages_unacknowledged: u64,
}

/// The local broker's management API, as the services run it.
pub const MANAGEMENT: &str = "http://guest:guest@127.0.0.1:15672";

pub async fn broker_queues(http: &reqwest::Client) -> Vec<BrokerQueue> {
    management_get(
        http,
        MANAGEMENT,
        "/api/queues",
        Some("columns=name,messages_ready,messages_unacknowledged"),
    )
    .await
    .unwrap()
}

/// The findings of one run; `violations` must be empty.
#[derive(Default, Debug)]
pub struct Findings {
    pub accepted: usize,
    pub refused: usize,
    pub unanswered: usize,
    pub completed: usize,
    pub dead_lettered: usize,
    pub lost: Vec<String>,
    pub stuck: Vec<String>,
    pub deactivated_kept: usize,
    pub refused_stored: i64,
    pub overlapping: Vec<String>,
    pub duplicated: usize,
    pub extra_deliveries: u64,
    pub broker_left: Vec<String>,
    pub stray_queues: Vec<String>,
    pub violations: Vec<String>,
}

pub struct Expect<'a> {
    pub run: &'a str,
    /// The tenant deactivated mid-flight: its messages are kept, not consumed.
    pub doomed_tenant: &'a str,
    /// Queues whose messages may end dead-lettered (the endpoint said so).
    pub may_dead_letter: &'a [&'a str],
    /// Every tenant queue of the run, as `tenant.<id>.<queue>`.
    pub work_queues: &'a [String],
}

pub async fn check(
    db: &tokio_postgres::Client,
    http: &reqwest::Client,
    outcomes: &Outcomes,
    record: &Record,
    expect: &Expect<'_>,
) -> Findings {
    let mut f = Findings {
        accepted: outcomes.accepted.len(),
        refused: outcomes.refused.len(),
        unanswered: outcomes.unanswered.len(),
        ..Findings::default()
    };
    let ids: Vec<uuid::Uuid> = outcomes
        .accepted
        .values()
        .filter_map(|a| a.id.parse().ok())
        .collect();
    let stored = statuses(db, &ids).await;
    for a in outcomes.accepted.values() {
        let Some((status, queue)) = a.id.parse().ok().and_then(|id| stored.get(&id)) else {
            f.lost.push(a.id.clone());
            continue;
        };
        if a.tenant == expect.doomed_tenant {
            f.deactivated_kept += 1;
            continue;
        }
        match status.as_str() {
            "completed" => f.completed += 1,
            "dead_lettered" => {
                f.dead_lettered += 1;
                if !expect.may_dead_letter.contains(&queue.as_str()) {
                    f.violations.push(format!(
                        "{} dead-lettered on `{queue}`, whose endpoint never refuses",
                        a.id
                    ));
                }
            }
            other => f.stuck.push(format!("{} {other}", a.id)),
        }
    }
    let refused: Vec<i64> = outcomes.refused.keys().map(|s| *s as i64).collect();
    f.refused_stored = refused_but_stored(db, expect.run, &refused).await;
    f.overlapping = record.overlapping.clone();
    for n in record.delivered.values() {
        if *n > 1 {
            f.duplicated += 1;
            f.extra_deliveries += u64::from(n - 1);
        }
    }
    let queues = broker_queues(http).await;
    let expected: HashSet<&str> = expect.work_queues.iter().map(String::as_str).collect();
    for q in &queues {
        let Some(work) = expect
            .work_queues
            .iter()
            .find(|w| q.name == **w || q.name.starts_with(&format!("{w}.")))
        else {
            if expect.work_queues.iter().any(|w| {
                let tenant_prefix = w.rsplit_once('.').map(|(t, _)| t).unwrap_or(w);
                q.name.starts_with(&format!("{tenant_prefix}."))
            }) {
                f.stray_queues.push(q.name.clone());
            }
            continue;
        };
        let is_work = expected.contains(q.name.as_str());
        let doomed = work.contains(expect.doomed_tenant);
        if is_work && !doomed && q.messages_ready + q.messages_unacknowledged > 0 {
            f.broker_left.push(format!(
                "{} ({} ready, {} unacknowledged)",
                q.name, q.messages_ready, q.messages_unacknowledged
            ));
        }
    }
    if !f.lost.is_empty() {
        f.violations
            .push(format!("{} accepted messages lost", f.lost.len()));
    }
    if !f.stuck.is_empty() {
        f.violations
            .push(format!("{} accepted messages stuck", f.stuck.len()));
    }
    if f.refused_stored > 0 {
        f.violations
            .push(format!("{} refused messages stored", f.refused_stored));
    }
    if !f.overlapping.is_empty() {
        f.violations.push(format!(
            "{} deliveries overlapped another of the same message",
            f.overlapping.len()
        ));
    }
    if !f.broker_left.is_empty() {
        f.violations
            .push(format!("work queues not drained: {:?}", f.broker_left));
    }
    if !f.stray_queues.is_empty() {
        f.violations
            .push(format!("stray broker queues: {:?}", f.stray_queues));
    }
    f
}
