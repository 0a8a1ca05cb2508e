//! How PostgreSQL runs the message path's statements on a database the service has just created
//! (issue 19). A connection plans each prepared statement once; a plan made while the tables
//! were empty read messages through the first index on `tenant_id` and scanned every waiting
//! message of the tenant per row, so a new deployment ran at a third of its speed. Here each
//! statement is prepared and run on the just-migrated, empty database (as a cold start does),
//! the tables grow, the maintenance tick runs, and the same session's plan must read `messages`
//! by key; and again once statistics say no message is pending, as autovacuum's often do.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use shared::{Config, db};
use tokio_postgres::SimpleQueryMessage;

/// A database of its own, created and migrated now, dropped when the test is done.
struct FreshDatabase {
    config: Config,
}

impl FreshDatabase {
    async fn create() -> Self {
        let mut config = Config::from_env().unwrap();
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/msgsvc_test".into());
        let name = format!("msgsvc_plans_{}", uuid::Uuid::new_v4().simple());
        let (base, _) = url.rsplit_once('/').unwrap();
        config.database_url = format!("{base}/{name}");
        db::ensure_database(&config).await.unwrap();
        db::migrate(&config).await.unwrap();
        Self { config }
    }

    async fn drop(self) {
        db::drop_database(&self.config).await.unwrap();
    }
}

/// The plan the session would run `EXECUTE <call>` with, as text.
async fn explain(client: &db::Client, call: &str) -> String {
    client
        .simple_query(&format!("EXPLAIN EXECUTE {call}"))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every scan of `table` is an index scan looking up `id`: never a sequential or bitmap scan,
/// and never an index scan on other columns with `id` left to a filter. The claim's check for
/// an earlier message of an ordering key may read that key's range of an ordering index
/// (`messages_ordering_*`, partial on unsettled or dead-lettered keyed messages).
fn reads_by_key(plan: &str, table: &str) -> Result<(), String> {
    let lines: Vec<&str> = plan.lines().collect();
    let on_table = format!(" on {table}");
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find(&on_table) else {
            continue;
        };
        // `on messages` or `on messages m`, not `on message_attempts`.
        let rest = &line[at + on_table.len()..];
        if !(rest.is_empty() || rest.starts_with(' ')) || !line.contains("Scan") {
            continue;
        }
        let kind = line[..at].trim().trim_start_matches("->").trim();
        if !kind.starts_with("Index Scan") && !kind.starts_with("Index Only Scan") {
            return Err(format!("{kind} on {table}"));
        }
        // PostgreSQL parenthesises every condition: `(id = u.id)`, never `(tenant_id = ...)`.
        let cond = lines[i + 1..]
            .iter()
            .take_while(|l| !l.contains("->"))
            .find(|l| l.contains("Index Cond:"));
        let key_range =
            |c: &&str| line.contains("messages_ordering_") && c.contains("(ordering_key = ");
        if !cond.is_some_and(|c| c.contains("(id = ") || key_range(c)) {
            return Err(format!("{} without an id lookup", line.trim()));
        }
    }
    Ok(())
}

#[tokio::test]
async fn message_path_plans_made_on_an_empty_database_read_by_key_once_tables_grow() {
    let fresh = FreshDatabase::create().await;
    // The database goes whether the checks pass or not.
    let outcome = AssertUnwindSafe(check_plans(&fresh.config))
        .catch_unwind()
        .await;
    fresh.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn check_plans(config: &Config) {
    let pool = db::pool(config).unwrap();
    let client = pool.get().await.unwrap();
    let statements = [
        (
            "mark_queued",
            "uuid[], uuid[]",
            db::messages::MARK_QUEUED,
            "mark_queued(ARRAY[gen_random_uuid()], ARRAY['00000000-0000-0000-0000-000000000001'::uuid])",
        ),
        (
            "claim",
            "uuid, text, uuid[], float8, boolean",
            db::messages::CLAIM,
            "claim('00000000-0000-0000-0000-000000000001', 'q0', ARRAY[gen_random_uuid()], 30, true)",
        ),
        (
            "complete",
            "uuid[], uuid[], int[], int2[], int[], text[]",
            db::messages::COMPLETE,
            "complete(ARRAY[gen_random_uuid()], ARRAY['00000000-0000-0000-0000-000000000001'::uuid], ARRAY[1], ARRAY[200::int2], ARRAY[5], ARRAY['ok'])",
        ),
    ];
    client
        .batch_execute("INSERT INTO tenants (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'first')")
        .await
        .unwrap();
    // A cold start on the new database: each statement prepared and run while it is empty, so
    // the session holds a plan made then.
    for (name, types, sql, call) in &statements {
        client
            .batch_execute(&format!("PREPARE {name}({types}) AS {sql}"))
            .await
            .unwrap();
        client
            .simple_query(&format!("EXECUTE {call}"))
            .await
            .unwrap();
    }
    // The first minutes of the deployment: tenants publish, consumers start on some messages.
    client
        .batch_execute(
            "INSERT INTO tenants (id, name) SELECT gen_random_uuid(), 't' || g FROM generate_series(1, 20) g;
             INSERT INTO messages (id, tenant_id, queue_name, body, status)
             SELECT gen_random_uuid(), t.id, 'q' || (g % 4), '{}', 'pending'
             FROM tenants t, generate_series(1, 2000) g;
             INSERT INTO message_attempts (message_id, attempt, tenant_id, queue_name)
             SELECT id, 1, tenant_id, queue_name FROM messages WHERE random() < 0.5;",
        )
        .await
        .unwrap();

    // The maintenance tick sees the tables outgrow their statistics.
    let analyzed = db::statistics::refresh(&pool).await.unwrap();
    assert!(
        analyzed.iter().any(|t| t == "messages"),
        "messages not analyzed: {analyzed:?}"
    );

    for (name, _, _, call) in &statements {
        let plan = explain(&client, call).await;
        reads_by_key(&plan, "messages").unwrap_or_else(|e| panic!("{name}: {e}\n{plan}"));
        assert!(
            !plan.contains("Seq Scan on message_attempts"),
            "{name} scans every attempt:\n{plan}"
        );
    }
    // Statistics now describe the tables: nothing to do until they double again.
    assert_eq!(
        db::statistics::refresh(&pool).await.unwrap(),
        Vec::<String>::new()
    );

    // Later, statistics taken when no message was pending or processing (they pass through
    // those states in milliseconds), as autovacuum takes them: a plan that trusts them finds
    // the partial index of unsettled messages empty and scans it for every row.
    client
        .batch_execute(
            "UPDATE messages SET status = CASE WHEN random() < 0.5 THEN 'queued' ELSE 'completed' END;
             ANALYZE messages; ANALYZE message_attempts;",
        )
        .await
        .unwrap();
    for (name, _, _, call) in &statements {
        let plan = explain(&client, call).await;
        reads_by_key(&plan, "messages")
            .unwrap_or_else(|e| panic!("{name}, skewed statistics: {e}\n{plan}"));
    }
}

#[test]
fn the_plan_check_tells_a_key_lookup_from_a_scan() {
    let by_key = "Nested Loop\n  ->  Index Scan using messages_by_tenant_status on messages m\n        Index Cond: ((tenant_id = u.tenant_id) AND (status = 'pending'::text) AND (id = u.id))";
    assert_eq!(reads_by_key(by_key, "messages"), Ok(()));
    let by_tenant = "Nested Loop\n  ->  Index Scan using messages_waiting on messages m\n        Index Cond: (tenant_id = u.tenant_id)\n        Filter: ((id = u.id) AND (status = 'pending'::text))";
    assert!(reads_by_key(by_tenant, "messages").is_err());
    let seq = "Hash Join\n  ->  Seq Scan on messages\n        Filter: (status = 'pending'::text)";
    assert!(reads_by_key(seq, "messages").is_err());
    assert_eq!(
        reads_by_key("Seq Scan on message_attempts a", "messages"),
        Ok(())
    );
    let key_range = "  ->  Index Only Scan using messages_ordering_unsettled on messages e\n        Index Cond: ((tenant_id = $1) AND (queue_name = $2) AND (ordering_key = messages.ordering_key))";
    assert_eq!(reads_by_key(key_range, "messages"), Ok(()));
    let other_range = "  ->  Index Scan using messages_waiting on messages e\n        Index Cond: ((tenant_id = $1) AND (queue_name = $2))";
    assert!(reads_by_key(other_range, "messages").is_err());
}

/// Every statement of a request path and of the consumer, as the code builds it, with the
/// name an assertion reports.
fn request_path_statements() -> Vec<(String, String)> {
    use db::{attempts, limits, messages, queue_stats, retention, tenants};
    let mut all: Vec<(String, String)> = vec![
        ("publish insert".into(), messages::INSERT_PENDING.into()),
        (
            "idempotency lookup".into(),
            messages::find_by_idempotency_keys_sql(),
        ),
        ("mark queued".into(), messages::MARK_QUEUED.into()),
        ("message lookup".into(), messages::get_sql()),
        ("standing".into(), messages::STANDING.into()),
        ("claim".into(), messages::CLAIM.into()),
        ("settle".into(), messages::SETTLE.into()),
        ("complete".into(), messages::COMPLETE.into()),
        (
            "backlog".into(),
            limits::backlog_sql(shared::domain::TenantId(uuid::Uuid::nil()), 1000),
        ),
        ("attempts list".into(), attempts::list_sql()),
        ("latest attempt".into(), attempts::latest_sql()),
        (
            "relay: unsettled".into(),
            messages::relay_take_unsettled_sql(),
        ),
        (
            "relay: queues with old queued".into(),
            messages::relay_queues_with_old_queued_sql(),
        ),
        ("relay: lost".into(), messages::RELAY_TAKE_LOST.into()),
        (
            "relay: republished".into(),
            messages::RELAY_MARK_REPUBLISHED.into(),
        ),
        ("relay: forget".into(), messages::RELAY_FORGET.into()),
        ("replay by ids".into(), db::replay::by_ids_sql()),
        ("replay by range".into(), db::replay::by_range_sql()),
    ];
    for shape in messages::ListShape::all() {
        all.push((format!("message list {shape:?}"), messages::list_sql(shape)));
    }
    for (queue, ids) in [(false, false), (true, false), (false, true), (true, true)] {
        all.push((
            format!("redrive (queue: {queue}, ids: {ids})"),
            messages::reset_dead_letters_sql(queue, ids),
        ));
    }
    for scoped in [true, false] {
        let who = if scoped { "tenant" } else { "admin" };
        all.push((
            format!("status by status, {who}"),
            queue_stats::by_status_sql(scoped),
        ));
        all.push((
            format!("status oldest waiting, {who}"),
            queue_stats::oldest_waiting_sql(scoped),
        ));
        all.push((
            format!("status recent, {who}"),
            queue_stats::recent_sql(scoped),
        ));
        all.push((
            format!("status last error, {who}"),
            queue_stats::last_error_sql(scoped),
        ));
    }
    for after in [false, true] {
        all.push((
            format!("tenants list (after: {after})"),
            tenants::list_all_sql(after),
        ));
    }
    for status in retention::Settled::ALL {
        all.push((
            format!("retention {status:?}"),
            retention::delete_expired_sql(status),
        ));
    }
    all
}

/// Scans of `messages` or `message_attempts` that read the whole table, anywhere in the plan.
fn table_scans(plan: &serde_json::Value, found: &mut Vec<String>) {
    if plan["Node Type"] == "Seq Scan" {
        let table = plan["Relation Name"].as_str().unwrap_or_default();
        if table == "messages" || table == "message_attempts" {
            found.push(format!("Seq Scan on {table}"));
        }
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        table_scans(child, found);
    }
}

/// Sorts, and conditions on `messages` an index does not take, anywhere in the plan.
fn unordered_or_filtered(plan: &serde_json::Value, found: &mut Vec<String>) {
    if plan["Node Type"] == "Sort" {
        found.push("a Sort".into());
    }
    if plan["Relation Name"] == "messages" && !plan["Filter"].is_null() {
        found.push(format!("Filter {} on messages", plan["Filter"]));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        unordered_or_filtered(child, found);
    }
}

#[tokio::test]
async fn no_request_path_statement_scans_messages_or_attempts_on_a_loaded_database() {
    let fresh = FreshDatabase::create().await;
    let outcome = AssertUnwindSafe(check_loaded_plans(&fresh.config))
        .catch_unwind()
        .await;
    fresh.drop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn check_loaded_plans(config: &Config) {
    let pool = db::pool(config).unwrap();
    let client = pool.get().await.unwrap();
    // 500 tenants with two queues each and 250,000 messages: mostly completed, some dead
    // letters, a backlog in every other status; an attempt per processed message, more for
    // dead letters, errors on the failed ones. Enough for the planner to cost indexes against
    // a scan as it does on a production table.
    client
        .batch_execute(
            "INSERT INTO tenants (id, name) SELECT gen_random_uuid(), 'plans-' || g
                 FROM generate_series(1, 500) g;
             INSERT INTO consumer_configs (tenant_id, queue_name, workers, retry_attempts,
                                           retry_delay_ms, signing_secret)
             SELECT t.id, 'q' || q, 1, 3, 1000, 's' FROM tenants t, generate_series(0, 1) q;
             CREATE TEMP TABLE t AS SELECT id, row_number() OVER () - 1 AS n FROM tenants;
             INSERT INTO messages (id, tenant_id, queue_name, body, status, attempts,
                                   total_attempts, created_at, updated_at, completed_at,
                                   dead_lettered_at, next_attempt_at, locked_until)
             SELECT gen_random_uuid(), t.id, 'q' || (g % 2), '{}', s.status,
                    s.tries, s.tries, at, at,
                    CASE WHEN s.status = 'completed' THEN at END,
                    CASE WHEN s.status = 'dead_lettered' THEN at END,
                    CASE WHEN s.status = 'retrying' THEN at END,
                    CASE WHEN s.status = 'processing' THEN at END
             FROM generate_series(1, 250000) g
             JOIN t ON t.n = g % 500
             CROSS JOIN LATERAL (SELECT now() - (g % 20000) * interval '1 minute' AS at) a
             CROSS JOIN LATERAL (SELECT CASE WHEN g % 100 < 90 THEN 'completed'
                                             WHEN g % 100 < 93 THEN 'dead_lettered'
                                             WHEN g % 100 < 95 THEN 'pending'
                                             WHEN g % 100 < 97 THEN 'queued'
                                             WHEN g % 100 < 98 THEN 'retrying'
                                             ELSE 'processing' END AS status,
                                        CASE WHEN g % 100 BETWEEN 90 AND 92 THEN 4
                                             WHEN g % 100 < 90 OR g % 100 >= 97 THEN 1
                                             ELSE 0 END AS tries) s;
             INSERT INTO message_attempts (message_id, attempt, tenant_id, queue_name,
                                           started_at, finished_at, outcome, error)
             SELECT m.id, k, m.tenant_id, m.queue_name, m.updated_at, m.updated_at,
                    CASE WHEN k < m.total_attempts THEN 'retrying' ELSE m.status END,
                    CASE WHEN m.status <> 'completed' THEN 'failed' END
             FROM messages m, generate_series(1, m.total_attempts) k
             WHERE m.status IN ('completed', 'dead_lettered', 'retrying');
             ANALYZE;
             SET plan_cache_mode = force_generic_plan;",
        )
        .await
        .unwrap();

    let mut failures = Vec::new();
    for (i, (name, sql)) in request_path_statements().iter().enumerate() {
        // Prepared without types, as tokio-postgres prepares: the parameter types are those the
        // text gives. The generic plan does not depend on the values, so NULLs do, and EXPLAIN
        // without ANALYZE runs nothing.
        client
            .batch_execute(&format!("PREPARE p{i} AS {sql}"))
            .await
            .unwrap_or_else(|e| panic!("{name}: cannot prepare: {e}\n{sql}"));
        let params: i32 = client
            .query_one(
                "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
                &[&format!("p{i}")],
            )
            .await
            .unwrap()
            .get(0);
        let args = vec!["NULL"; params as usize].join(", ");
        let call = if params == 0 {
            format!("p{i}")
        } else {
            format!("p{i}({args})")
        };
        let plan: serde_json::Value = client
            .query_one(&format!("EXPLAIN (FORMAT JSON) EXECUTE {call}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{name}: cannot explain: {e}"))
            .get(0);
        // `PRINT_PLANS=1` shows every plan.
        if std::env::var_os("PRINT_PLANS").is_some() {
            eprintln!("== {name}\n{}\n", explain(&client, &call).await);
        }
        let mut scans = Vec::new();
        table_scans(&plan[0]["Plan"], &mut scans);
        // A page reads its rows in order from one index range: a condition left to a filter
        // (as `$n IS NULL OR col = $n` is in a generic plan) or a sort reads the tenant's rows
        // from the top to find a late page.
        if name.starts_with("message list") {
            unordered_or_filtered(&plan[0]["Plan"], &mut scans);
        }
        if !scans.is_empty() {
            failures.push(format!(
                "{name}: {}\n{}",
                scans.join(", "),
                explain(&client, &call).await
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "statements that scan a whole table, or a list that does not read its page by index:\n\n{}",
        failures.join("\n\n")
    );
}
