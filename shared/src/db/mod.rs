//! PostgreSQL: the pool, migrations, TLS, and the repositories, one module per aggregate
//! (tenants with their limits, messages with their attempts, a queue's config, runtime and
//! control state, the status figures). Every function that
//! reads or writes tenant data takes the tenant id; the few system-wide queries (the relay, the
//! local event source, admin views) say so in their names.

pub mod attempts;
pub mod brokers;
pub mod concurrency_budget;
pub mod consumer_configs;
pub mod consumer_runtime;
pub mod control_state;
pub mod group_commit;
pub mod limits;
pub mod messages;
pub mod ordering;
pub mod queue_stats;
pub mod replay;
pub mod retention;
pub mod rollouts;
pub mod schedule;
pub mod statistics;
pub mod tenants;
pub mod tls;
pub mod unmapped;

use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{ManagerConfig, PoolConfig, RecyclingMethod, Runtime, SslMode, Timeouts};
use tokio_postgres::NoTls;

use crate::Config;

pub use deadpool_postgres::{Client, Pool};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Builds the pool; connections are opened lazily, so this does not touch the network.
pub fn pool(config: &Config) -> anyhow::Result<Pool> {
    let mut cfg = deadpool_postgres::Config::new();
    cfg.url = Some(config.database_url.clone());
    // `plan_cache_mode=force_generic_plan` by default (`config::DEFAULT_DATABASE_OPTIONS` says
    // why); none behind RDS Proxy, which refuses the startup parameter and runs the same SET as
    // its InitQuery. Left alone when the URL sets its own options.
    if !config.database_url.contains("options=") {
        cfg.options = config.database_options.clone();
    }
    cfg.manager = Some(ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    });
    let timeout = Some(Duration::from_secs(5));
    cfg.pool = Some(PoolConfig {
        max_size: config.database_max_connections,
        timeouts: Timeouts {
            wait: timeout,
            create: timeout,
            recycle: timeout,
        },
        ..PoolConfig::default()
    });
    match tls::connector(&config.database_tls)? {
        Some(connector) => {
            cfg.ssl_mode = Some(SslMode::Require);
            cfg.create_pool(Some(Runtime::Tokio1), connector)
        }
        None => {
            cfg.ssl_mode = Some(SslMode::Disable);
            cfg.create_pool(Some(Runtime::Tokio1), NoTls)
        }
    }
    .context("invalid DATABASE_URL")
}

/// Creates the configured database when it does not exist yet (local mode only: in AWS the
/// stack creates it).
pub async fn ensure_database(config: &Config) -> anyhow::Result<()> {
    let (Some(admin_url), Some(name)) = (config.maintenance_database_url(), config.database_name())
    else {
        return Ok(());
    };
    if tls::connect(&config.database_url, &config.database_tls)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let client = tls::connect(&admin_url, &config.database_tls)
        .await
        .context("cannot reach PostgreSQL to create the database")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client
            .execute(&format!("CREATE DATABASE {quoted}"), &[])
            .await
        {
            Ok(_) => tracing::info!(database = name, "created database"),
            // Another process created it at the same moment.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e).context("CREATE DATABASE failed"),
        }
    }
    Ok(())
}

/// Drops the configured database (disconnecting its sessions), through the server's `postgres`
/// database as [`ensure_database`] creates it. For tests and the benchmark, which make databases
/// of their own; nothing on a request path calls it.
pub async fn drop_database(config: &Config) -> anyhow::Result<()> {
    let (Some(admin_url), Some(name)) = (config.maintenance_database_url(), config.database_name())
    else {
        anyhow::bail!("DATABASE_URL names no database");
    };
    let client = tls::connect(&admin_url, &config.database_tls)
        .await
        .context("cannot reach PostgreSQL to drop the database")?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await
        .context("DROP DATABASE failed")?;
    Ok(())
}

/// Applies pending migrations. An advisory lock serialises concurrent starters (several API
/// instances, parallel test binaries).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let mut client = tls::connect(&config.database_url, &config.database_tls)
        .await
        .context("cannot connect to PostgreSQL to migrate")?;
    const LOCK: i64 = 0x6d73_6773_7663; // "msgsvc"
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await?;
    let mut report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .context("migration failed");
    if let (Ok(_), Some(max)) = (&report, config.broker_max_queues)
        && let Err(e) = brokers::set_home_budget(&client, max).await
    {
        report = Err(anyhow::Error::from(e).context("cannot set BROKER_MAX_QUEUES"));
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await?;
    drop(client);
    for m in report?.applied_migrations() {
        tracing::info!(migration = %m, "applied migration");
    }
    Ok(())
}

/// Classifies a unique-constraint violation by constraint name.
pub(crate) fn unique_violation(err: &tokio_postgres::Error) -> Option<&str> {
    let db = err.as_db_error()?;
    if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION {
        db.constraint()
    } else {
        None
    }
}

/// `WHERE <column> = $1` for one tenant, nothing for every tenant (the admin views): two
/// statements, not `($1 IS NULL OR col = $1)`, whose generic plan (connections plan
/// generically, see [`pool`]) cannot use `column` in an index and reads every tenant's rows.
pub(crate) struct TenantScope {
    tenant: Option<uuid::Uuid>,
}

impl TenantScope {
    pub(crate) fn new(tenant: Option<crate::domain::TenantId>) -> Self {
        Self {
            tenant: tenant.map(|t| t.0),
        }
    }

    /// The condition on `column`, with `keyword` (`WHERE` or `AND`) before it; empty for all.
    pub(crate) fn condition(&self, keyword: &str, column: &str) -> String {
        condition(self.tenant.is_some(), keyword, column)
    }

    /// The statement's parameters: `$1` the tenant when scoped to one.
    pub(crate) fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        match &self.tenant {
            Some(t) => vec![t],
            None => Vec::new(),
        }
    }
}

/// See [`TenantScope::condition`]; `scoped` says whether one tenant's rows are asked for.
pub fn condition(scoped: bool, keyword: &str, column: &str) -> String {
    if scoped {
        format!(" {keyword} {column} = $1::uuid")
    } else {
        String::new()
    }
}
