//! The large-table scenario (issue 16): the request-path figures on a database holding millions
//! of messages over a thousand tenants, next to the same figures on an empty database, in the
//! same run and through the same API process.
//!
//! Both phases load their data with the same set-based statement ([`load`]): on the empty
//! database only the measured tenant, with a couple of pages of messages and dead letters; then
//! the same database is loaded to `LARGE_MESSAGES` messages (5 million by default) over 1,000
//! tenants, vacuumed and analyzed as a long-lived database is, and measured again.

use std::time::Instant;

use serde::Serialize;
use shared::{db::Client, domain::TenantId};

use crate::{
    load,
    scenarios::{self, Bench},
    stats::{Summary, summarize},
};

/// Messages per page of the list figures (the API's default page size).
const PAGE: usize = 50;

/// What is measured, on one database.
#[derive(Debug, Serialize)]
pub struct Figures {
    /// What the database held when measured.
    pub messages: i64,
    pub attempts: i64,
    pub tenants: i64,
    /// Which page the late-page figures read (1-based).
    pub late_messages_page: usize,
    pub late_dead_letters_page: usize,
    pub single_publish: Summary,
    pub batch_publish: Summary,
    pub drain: Summary,
    pub messages_first_page: Summary,
    pub messages_late_page: Summary,
    pub dead_letters_first_page: Summary,
    pub dead_letters_late_page: Summary,
    pub message_lookup: Summary,
    pub consumer_status: Summary,
    /// The database's part of the status: `db::queue_stats::figures` for the tenant (the
    /// route also asks the broker for its queue list, which no table size changes).
    pub status_figures: Summary,
    pub retention: Summary,
}

#[derive(Debug, Serialize)]
pub struct LargeReport {
    pub empty: Figures,
    pub large: Figures,
    /// Seconds the large load took (insert, indexes, vacuum and analyze).
    pub load_secs: f64,
}

/// The shape of a load: `tenants` tenants with queues `q0` and `q1`; `messages` messages,
/// one in five of the measured tenant's (tenant 0, all of them when it is the only one), the
/// rest spread over the others; 94.2% completed, 5.5% dead-lettered, 0.1% each queued,
/// retrying and pending, created over the last 6.5 days (inside the default retention) in id
/// order, with an attempt per processed message and three per dead letter.
pub struct Shape {
    pub tenants: i64,
    pub messages: i64,
}

/// Loads `shape` into the database in chunks, set-based. With `bulk`, the secondary indexes
/// and the attempts' foreign key are dropped first and built again afterwards (a few minutes
/// instead of an hour on two cores); the dead-letter counters' trigger stays on throughout.
/// Returns tenant 0.
pub async fn load(client: &Client, shape: &Shape, bulk: bool) -> anyhow::Result<TenantId> {
    client
        .batch_execute(
            "SET synchronous_commit = off; SET maintenance_work_mem = '512MB';
             CREATE TABLE IF NOT EXISTS bench_tenants (n int PRIMARY KEY, id uuid NOT NULL)",
        )
        .await?;
    let known: i64 = client
        .query_one("SELECT count(*) FROM bench_tenants", &[])
        .await?
        .get(0);
    client
        .execute(
            "WITH t AS (
                 INSERT INTO tenants (id, name)
                 SELECT gen_random_uuid(), 'large-' || n FROM generate_series($1::int, $2::int - 1) n
                 RETURNING id, substr(name, 7)::int AS n),
             b AS (INSERT INTO bench_tenants SELECT n, id FROM t)
             INSERT INTO consumer_configs (tenant_id, queue_name, workers, retry_attempts,
                                           retry_delay_ms, signing_secret)
             SELECT id, 'q' || q, 1, 3, 1000, md5(id::text) FROM t, generate_series(0, 1) q",
            &[&(known as i32), &(shape.tenants as i32)],
        )
        .await?;
    let subject: uuid::Uuid = client
        .query_one("SELECT id FROM bench_tenants WHERE n = 0", &[])
        .await?
        .get(0);

    let rebuild = if bulk {
        drop_secondary(client).await?
    } else {
        Vec::new()
    };
    // Message numbers go on from the previous load's, so ids stay unique.
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS bench_loaded (bench_n bigint)")
        .await?;
    let start: i64 = client
        .query_one("SELECT coalesce(max(bench_n), 0) FROM bench_loaded", &[])
        .await?
        .get(0);
    let chunk = 250_000i64;
    let mut lo = start;
    let end = start + shape.messages;
    while lo < end {
        let hi = (lo + chunk).min(end);
        let t = Instant::now();
        client
            .execute(LOAD_CHUNK, &[&lo, &hi, &end, &(shape.tenants as i32)])
            .await?;
        if bulk {
            eprintln!(
                "    {hi} of {end} messages ({:.1} s for this chunk)",
                t.elapsed().as_secs_f64()
            );
        }
        lo = hi;
    }
    client
        .execute("INSERT INTO bench_loaded VALUES ($1)", &[&end])
        .await?;
    for sql in rebuild {
        let t = Instant::now();
        client.batch_execute(&sql).await?;
        eprintln!("    {:.1} s: {sql}", t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    // One statement per call: VACUUM cannot run in the implicit transaction of several.
    for sql in [
        "VACUUM (ANALYZE) messages",
        "VACUUM (ANALYZE) message_attempts",
        "ANALYZE",
    ] {
        client.batch_execute(sql).await?;
    }
    if bulk {
        eprintln!("    {:.1} s: vacuum and analyze", t.elapsed().as_secs_f64());
    }
    Ok(TenantId(subject))
}

/// One chunk: `$1..$2` of `$3` messages over `$4` tenants. Ids are UUIDv7 of the creation time
/// (the message number in the random bits), so they are time-ordered as the service's are.
const LOAD_CHUNK: &str = "WITH s AS MATERIALIZED (
         SELECT g, t.id AS tenant_id, 'q' || (g % 2) AS queue_name, at,
                (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
                 || lpad(to_hex(g % 4096), 3, '0') || '8' || lpad(to_hex(g), 15, '0'))::uuid AS id,
                CASE WHEN g % 1000 < 942 THEN 'completed'
                     WHEN g % 1000 < 997 THEN 'dead_lettered'
                     WHEN g % 1000 = 997 THEN 'queued'
                     WHEN g % 1000 = 998 THEN 'retrying'
                     ELSE 'pending' END AS status
         FROM generate_series($1::int8, $2::int8 - 1) g
         CROSS JOIN LATERAL (SELECT now() - interval '6.5 days'
                                    + (g::float8 / $3::int8) * interval '6.5 days' AS at) a
         JOIN bench_tenants t ON t.n = CASE WHEN $4::int = 1 OR g % 5 = 0 THEN 0
                                            ELSE 1 + (g % ($4::int - 1)) END),
     m AS (
         INSERT INTO messages (id, tenant_id, queue_name, body, status, attempts,
                               total_attempts, last_error, created_at, updated_at, queued_at,
                               completed_at, dead_lettered_at, next_attempt_at)
         SELECT id, tenant_id, queue_name, jsonb_build_object('order', g, 'amount', g % 997),
                status, n, n, CASE WHEN n > 0 AND status <> 'completed' THEN 'HTTP 500' END,
                at, at, CASE WHEN status <> 'pending' THEN at END,
                CASE WHEN status = 'completed' THEN at END,
                CASE WHEN status = 'dead_lettered' THEN at END,
                CASE WHEN status = 'retrying' THEN at + interval '1 minute' END
         FROM s CROSS JOIN LATERAL (SELECT CASE status WHEN 'completed' THEN 1
                                        WHEN 'dead_lettered' THEN 3 WHEN 'retrying' THEN 1
                                        ELSE 0 END AS n) k)
     INSERT INTO message_attempts (message_id, attempt, tenant_id, queue_name, started_at,
                                   finished_at, outcome, error, http_status, duration_ms,
                                   response_excerpt)
     SELECT id, a, tenant_id, queue_name, at, at + interval '20 milliseconds',
            CASE WHEN status = 'completed' THEN 'completed'
                 WHEN status = 'dead_lettered' AND a = 3 THEN 'dead_lettered'
                 ELSE 'retrying' END,
            CASE WHEN status <> 'completed' THEN 'HTTP 500' END,
            CASE WHEN status = 'completed' THEN 200 ELSE 500 END, 20,
            CASE WHEN status = 'completed' THEN 'ok' ELSE 'internal error' END
     FROM s CROSS JOIN generate_series(1, CASE status WHEN 'completed' THEN 1
                                          WHEN 'dead_lettered' THEN 3 WHEN 'retrying' THEN 1
                                          ELSE 0 END) a";

/// Drops the secondary indexes of messages and attempts and the attempts' foreign key; returns
/// the statements that build them again.
async fn drop_secondary(client: &Client) -> anyhow::Result<Vec<String>> {
    let indexes = client
        .query(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
             FROM pg_index i
             WHERE i.indrelid IN ('messages'::regclass, 'message_attempts'::regclass)
               AND NOT i.indisprimary",
            &[],
        )
        .await?;
    let keys = client
        .query(
            "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = 'message_attempts'::regclass AND contype = 'f'",
            &[],
        )
        .await?;
    let mut rebuild = Vec::new();
    for r in &indexes {
        let (name, def): (String, String) = (r.get(0), r.get(1));
        client.batch_execute(&format!("DROP INDEX {name}")).await?;
        rebuild.push(def);
    }
    for r in &keys {
        let (name, def): (String, String) = (r.get(0), r.get(1));
        client
            .batch_execute(&format!(
                "ALTER TABLE message_attempts DROP CONSTRAINT {name}"
            ))
            .await?;
        rebuild.push(format!(
            "ALTER TABLE message_attempts ADD CONSTRAINT {name} {def}"
        ));
    }
    Ok(rebuild)
}

/// The database's contents and the measured tenant's cursors.
struct Subject {
    tenant: TenantId,
    /// A message in the middle of the tenant's.
    message: uuid::Uuid,
    /// (page number, cursor) of the late pages: the 1,000th when there are that many, else the
    /// second.
    late_messages: (usize, uuid::Uuid),
    late_dead_letters: (usize, uuid::Uuid),
}

async fn subject(client: &Client, tenant: TenantId) -> anyhow::Result<Subject> {
    // The cursor of page p is the id of the last item of page p - 1.
    let late = |status: Option<&'static str>| {
        let tenant = tenant.0;
        async move {
            let filter = status.map_or(String::new(), |s| format!(" AND status = '{s}'"));
            let count: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM messages WHERE tenant_id = $1{filter}"),
                    &[&tenant],
                )
                .await?
                .get(0);
            let page = if count as usize > 1000 * PAGE {
                1000
            } else {
                2
            };
            let cursor: uuid::Uuid = client
                .query_one(
                    &format!(
                        "SELECT id FROM messages WHERE tenant_id = $1{filter}
                         ORDER BY id DESC OFFSET $2 LIMIT 1"
                    ),
                    &[&tenant, &(((page - 1) * PAGE - 1) as i64)],
                )
                .await?
                .get(0);
            anyhow::Ok((page, cursor))
        }
    };
    let late_messages = late(None).await?;
    let late_dead_letters = late(Some("dead_lettered")).await?;
    let message: uuid::Uuid = client
        .query_one(
            "SELECT id FROM messages WHERE tenant_id = $1 ORDER BY id
             OFFSET (SELECT count(*) / 2 FROM messages WHERE tenant_id = $1) LIMIT 1",
            &[&tenant.0],
        )
        .await?
        .get(0);
    Ok(Subject {
        tenant,
        message,
        late_messages,
        late_dead_letters,
    })
}

/// `GET path` back to back from one client for `secs`: latency per request.
async fn get(b: &Bench, path: String, secs: f64) -> anyhow::Result<Summary> {
    let (http, url, token) = (b.http.clone(), format!("{}{path}", b.api), b.admin.clone());
    let run = load::closed_loop(1, b.secs(secs), move || {
        let req = http.get(&url).bearer_auth(&token);
        async move {
            let resp = req.send().await?;
            anyhow::ensure!(resp.status().is_success(), "{}", resp.status());
            resp.bytes().await?;
            Ok(1)
        }
    })
    .await;
    run.ensure_ok(&path)?;
    Ok(summarize(run.latencies, run.items, run.wall))
}

/// Stores `n` completed messages, each with an attempt, settled 8 days ago (past the default
/// 7 days), spread over every loaded tenant; then runs the retention sweep until nothing is
/// due and returns its rate in messages deleted per second.
async fn retention(b: &Bench, client: &Client, n: i64) -> anyhow::Result<Summary> {
    client
        .execute(
            "WITH t AS (SELECT id, row_number() OVER (ORDER BY n) - 1 AS k,
                               count(*) OVER () AS c FROM bench_tenants),
             m AS (
                 INSERT INTO messages (id, tenant_id, queue_name, body, status, attempts,
                                       total_attempts, created_at, updated_at, queued_at,
                                       completed_at)
                 SELECT gen_random_uuid(), t.id, 'q0', '{}', 'completed', 1, 1,
                        now() - interval '8 days', now() - interval '8 days',
                        now() - interval '8 days', now() - interval '8 days'
                 FROM generate_series(0, $1::int8 - 1) g JOIN t ON t.k = g % t.c
                 RETURNING id, tenant_id, completed_at)
             INSERT INTO message_attempts (message_id, attempt, tenant_id, queue_name,
                                           started_at, finished_at, outcome)
             SELECT id, 1, tenant_id, 'q0', completed_at, completed_at, 'completed' FROM m",
            &[&n],
        )
        .await?;
    let start = Instant::now();
    let mut deleted = 0u64;
    let mut sweeps = Vec::new();
    loop {
        let t = Instant::now();
        let r = shared::services::retention::sweep(&b.ctx).await?;
        sweeps.push(t.elapsed());
        deleted += r.messages;
        if r.messages == 0 {
            break;
        }
    }
    anyhow::ensure!(
        deleted as i64 >= n,
        "retention deleted {deleted} of {n} due messages"
    );
    Ok(summarize(sweeps, deleted as usize, start.elapsed()))
}

/// Every figure once, on the database as it is now.
async fn measure(b: &mut Bench, client: &Client, tenant: TenantId) -> anyhow::Result<Figures> {
    let s = subject(client, tenant).await?;
    let count = |table: &'static str| async move {
        anyhow::Ok(
            client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .get::<_, i64>(0),
        )
    };
    let (messages, attempts, tenants) = (
        count("messages").await?,
        count("message_attempts").await?,
        count("tenants").await?,
    );
    eprintln!("  {messages} messages, {attempts} attempts, {tenants} tenants");
    let t = s.tenant;
    let base = format!("/api/v1/tenants/{t}");
    eprintln!("  reads");
    let messages_first_page = get(b, format!("{base}/messages?limit={PAGE}"), 3.0).await?;
    let messages_late_page = get(
        b,
        format!("{base}/messages?limit={PAGE}&cursor={}", s.late_messages.1),
        3.0,
    )
    .await?;
    let dead_letters_first_page = get(b, format!("{base}/dead-letters?limit={PAGE}"), 3.0).await?;
    let dead_letters_late_page = get(
        b,
        format!(
            "{base}/dead-letters?limit={PAGE}&cursor={}",
            s.late_dead_letters.1
        ),
        3.0,
    )
    .await?;
    let message_lookup = get(b, format!("{base}/messages/{}", s.message), 3.0).await?;
    let consumer_status = get(b, format!("{base}/consumers"), 3.0).await?;
    let pool = b.ctx.db.clone();
    let run = load::closed_loop(1, b.secs(3.0), move || {
        let pool = pool.clone();
        async move {
            shared::db::queue_stats::figures(&pool, Some(t), 300.0).await?;
            Ok(1)
        }
    })
    .await;
    run.ensure_ok("status figures")?;
    let status_figures = summarize(run.latencies, run.items, run.wall);
    eprintln!("  single publish");
    // To a tenant of its own, as batch publish and the drain do: the measured tenant's backlog,
    // which its status reads, stays what was loaded.
    let publisher = b.tenant("publish", 1).await?;
    let run = load::closed_loop(
        16,
        b.secs(4.0),
        scenarios::publish_fn(b, publisher, "publish"),
    )
    .await;
    run.ensure_ok("single publish")?;
    let single_publish = summarize(run.latencies, run.items, run.wall);
    eprintln!("  batch publish");
    let batch_publish = scenarios::batch(b, 100).await?;
    eprintln!("  claim and drain");
    let drain = scenarios::drain(b, if b.quick { 2_000 } else { 20_000 }).await?;
    eprintln!("  retention");
    let retention = retention(b, client, if b.quick { 2_000 } else { 20_000 }).await?;
    Ok(Figures {
        messages,
        attempts,
        tenants,
        late_messages_page: s.late_messages.0,
        late_dead_letters_page: s.late_dead_letters.0,
        single_publish,
        batch_publish,
        drain,
        messages_first_page,
        messages_late_page,
        dead_letters_first_page,
        dead_letters_late_page,
        message_lookup,
        consumer_status,
        status_figures,
        retention,
    })
}

/// The scenario: the empty database's figures, the load, the large database's figures.
/// `messages`: the size of the large load.
pub async fn run(b: &mut Bench, messages: i64) -> anyhow::Result<LargeReport> {
    let client = b.ctx.db.get().await?;
    eprintln!("large tables: the empty database, the measured tenant alone");
    let tenant = load(
        &client,
        &Shape {
            tenants: 1,
            messages: 2_000,
        },
        false,
    )
    .await?;
    let empty = measure(b, &client, tenant).await?;
    eprintln!("large tables: loading {messages} messages over 1,000 tenants");
    let t = Instant::now();
    load(
        &client,
        &Shape {
            tenants: 1_000,
            messages,
        },
        true,
    )
    .await?;
    let load_secs = t.elapsed().as_secs_f64();
    eprintln!("  loaded in {load_secs:.0} s");
    let large = measure(b, &client, tenant).await?;
    Ok(LargeReport {
        empty,
        large,
        load_secs,
    })
}

impl LargeReport {
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let (e, l) = (&self.empty, &self.large);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Empty database: {} messages, {} attempts, {} tenants. Large: {} messages, {} \
             attempts, {} tenants (loaded, vacuumed and analyzed in {:.0} s).\n",
            e.messages, e.attempts, e.tenants, l.messages, l.attempts, l.tenants, self.load_secs
        );
        let _ = writeln!(
            out,
            "| figure | empty database | large database | large / empty | within 1.5x |\n|---|---|---|---|---|"
        );
        let latency = |name: String, a: &Summary, b: &Summary| {
            let ratio = b.p50_ms / a.p50_ms.max(1e-9);
            format!(
                "| {name}, p50 / p99 ms | {:.2} / {:.2} | {:.2} / {:.2} | {ratio:.2}x | {} |",
                a.p50_ms,
                a.p99_ms,
                b.p50_ms,
                b.p99_ms,
                verdict(ratio)
            )
        };
        let rate = |name: &str, a: &Summary, b: &Summary, request_path: bool| {
            // A cost ratio: how much slower the large database is.
            let ratio = a.throughput / b.throughput.max(1e-9);
            format!(
                "| {name}, msg/s | {:.0} | {:.0} | {ratio:.2}x | {} |",
                a.throughput,
                b.throughput,
                if request_path {
                    verdict(ratio)
                } else {
                    "(not a request path)".into()
                }
            )
        };
        let rows = [
            rate(
                "single publish, 16 clients",
                &e.single_publish,
                &l.single_publish,
                true,
            ),
            rate(
                "batch publish, 100 per request, 4 clients",
                &e.batch_publish,
                &l.batch_publish,
                true,
            ),
            rate("claim and drain", &e.drain, &l.drain, true),
            latency(
                "messages, first page".into(),
                &e.messages_first_page,
                &l.messages_first_page,
            ),
            latency(
                format!(
                    "messages, page {} (empty: page {})",
                    l.late_messages_page, e.late_messages_page
                ),
                &e.messages_late_page,
                &l.messages_late_page,
            ),
            latency(
                "dead letters, first page".into(),
                &e.dead_letters_first_page,
                &l.dead_letters_first_page,
            ),
            latency(
                format!(
                    "dead letters, page {} (empty: page {})",
                    l.late_dead_letters_page, e.late_dead_letters_page
                ),
                &e.dead_letters_late_page,
                &l.dead_letters_late_page,
            ),
            latency(
                "message lookup".into(),
                &e.message_lookup,
                &l.message_lookup,
            ),
            latency(
                "tenant's consumer status".into(),
                &e.consumer_status,
                &l.consumer_status,
            ),
            latency(
                "its database part (`queue_stats::figures`)".into(),
                &e.status_figures,
                &l.status_figures,
            ),
            rate("retention sweep", &e.retention, &l.retention, false),
        ];
        for r in rows {
            let _ = writeln!(out, "{r}");
        }
        out
    }
}

fn verdict(ratio: f64) -> String {
    if ratio <= 1.5 {
        "yes".into()
    } else {
        format!("**no**, {ratio:.2}x")
    }
}

/// Replaces the large-table results of `doc`, keeping the rest.
pub fn splice(doc: &str, results: &str) -> String {
    const START: &str = "<!-- large:start -->";
    const END: &str = "<!-- large:end -->";
    match (doc.find(START), doc.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{START}\n{results}\n{}", &doc[..a], &doc[b..]),
        _ => format!("{doc}\n{START}\n{results}\n{END}\n"),
    }
}
