//! Planner statistics for tables that are still young.
//!
//! Every connection plans its prepared statements once (`plan_cache_mode=force_generic_plan`,
//! see [`super::pool`]), and PostgreSQL re-makes a cached plan only when the statistics of a
//! table it reads change. On a database the service has just created those statistics say
//! "empty" until autovacuum first analyzes the table (a minute or more at default settings), so
//! plans made then keep being used as the tables grow. The message path's key lookups are
//! written so that no statistics can change how they read (`super::messages`); everything else
//! is planned against whatever the statistics said last, which is what this module keeps true.
//!
//! [`refresh`] analyzes each hot table that holds data but has never been analyzed, or has
//! doubled in size since it last was. Analyzing invalidates the plans cached on that table, so
//! every connection (and every Lambda instance, whatever it prepared at its cold start) plans
//! again with figures true to the table's size. Once a table is large, doubling is rare and
//! autovacuum's own thresholds keep it current. It runs on the maintenance tick: the relay's
//! interval outside Lambda, the relay's schedule in AWS.

use super::Pool;
use crate::error::Result;

/// The tables every request reads by key.
pub const HOT_TABLES: &[&str] = &[
    "messages",
    "message_attempts",
    "tenants",
    "consumer_configs",
];

/// Analyzes the hot tables whose statistics no longer describe them; returns their names.
pub async fn refresh(pool: &Pool) -> Result<Vec<String>> {
    let client = pool.get().await?;
    // `relpages` is what the last ANALYZE (or VACUUM) saw; the relation's size now is read from
    // its files, so this needs no statistics collector and sees rows the moment they commit.
    let stale = client
        .query(
            "SELECT c.relname::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relname = ANY($1) AND c.relkind = 'r'
               AND pg_relation_size(c.oid) > 0
               AND (c.reltuples < 0
                    OR pg_relation_size(c.oid) / current_setting('block_size')::bigint
                       > 2 * greatest(c.relpages, 1))",
            &[&HOT_TABLES],
        )
        .await?;
    let mut analyzed = Vec::with_capacity(stale.len());
    for row in stale {
        let table: String = row.get(0);
        // The name comes from the fixed list above, never from input.
        client.batch_execute(&format!("ANALYZE {table}")).await?;
        analyzed.push(table);
    }
    if !analyzed.is_empty() {
        tracing::info!(tables = ?analyzed, "planner statistics refreshed");
    }
    Ok(analyzed)
}
