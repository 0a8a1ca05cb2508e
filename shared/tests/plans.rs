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
