//! The benchmark's database: created anew by every run, so the first pass sees what a new
//! deployment sees, and described (statistics state) before each pass.

use serde::Serialize;
use shared::{Config, db::Pool};

/// The benchmark drops and re-creates its database; only a name of its own is accepted.
pub const PREFIX: &str = "msgsvc_bench";

/// Drops the benchmark's database if it exists; [`crate::scenarios::Bench::start`] creates and
/// migrates it again.
pub async fn drop_bench_database(config: &Config) -> anyhow::Result<()> {
    let name = config.database_name().unwrap_or_default();
    anyhow::ensure!(
        name.starts_with(PREFIX) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "the benchmark drops and re-creates its database, so DATABASE_URL must name one starting \
         with {PREFIX} (got {name:?})"
    );
    shared::db::drop_database(config).await
}

/// What the planner knows about the hot tables, and how often they were analyzed.
#[derive(Debug, Clone, Serialize)]
pub struct TableStats {
    pub table: String,
    /// Rows in the table now.
    pub rows: i64,
    /// Rows the planner's statistics describe (`pg_class.reltuples`; -1 never analyzed).
    pub planner_rows: f64,
    /// ANALYZE runs by the service (`analyze_count`) and by autovacuum (`autoanalyze_count`).
    pub analyzes: i64,
    pub autoanalyzes: i64,
}

pub async fn table_stats(pool: &Pool) -> anyhow::Result<Vec<TableStats>> {
    let client = pool.get().await?;
    let mut out = Vec::new();
    for table in ["messages", "message_attempts"] {
        // Counted exactly: a statistics estimate is what is being described.
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await?
            .get(0);
        let row = client
            .query_one(
                "SELECT c.reltuples::float8, s.analyze_count, s.autoanalyze_count
                 FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
                 WHERE c.relname = $1",
                &[&table],
            )
            .await?;
        out.push(TableStats {
            table: table.into(),
            rows,
            planner_rows: row.get(0),
            analyzes: row.get(1),
            autoanalyzes: row.get(2),
        });
    }
    Ok(out)
}

/// `messages: 0 rows, never analyzed` or `messages: 412,000 rows (planner: 398,000; analyzed
/// 3x by the service, 1x by autovacuum)`.
pub fn describe(stats: &[TableStats]) -> String {
    stats
        .iter()
        .map(|s| {
            if s.planner_rows < 0.0 {
                format!("{}: {} rows, never analyzed", s.table, s.rows)
            } else {
                format!(
                    "{}: {} rows (planner: {:.0}; analyzed {}x by the service, {}x by autovacuum)",
                    s.table, s.rows, s.planner_rows, s.analyzes, s.autoanalyzes
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
