//! The broker registry (`brokers`, V12): which RabbitMQ brokers the deployment puts tenants on,
//! and each tenant's assignment (`tenants.broker_id`). Assignment happens once, when the tenant
//! is created; the queue budget is checked under a lock on the broker's row whenever a tenant
//! queue is created.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Pool, unique_violation};
use crate::{
    domain::TenantId,
    error::{Code, Error, Result},
};

/// The deployment's own broker (its URLs come from the configuration, not the registry).
pub const HOME: &str = "default";

/// One registry row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BrokerRecord {
    pub id: String,
    /// `amqp(s)://host:port/vhost`, no credentials; null for `default` (the deployment's own,
    /// from `RABBITMQ_URL`).
    pub amqp_url: Option<String>,
    pub management_url: Option<String>,
    pub mq_broker_arn: Option<String>,
    pub mq_secret_arn: Option<String>,
    /// Tenant queues it may hold; null: no cap.
    pub max_queues: Option<i32>,
    /// Whether new tenants are assigned to it.
    pub accepting: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an admin registers or changes.
#[derive(Clone, Debug, Default)]
pub struct BrokerSettings {
    pub amqp_url: Option<String>,
    pub management_url: Option<String>,
    pub mq_broker_arn: Option<String>,
    pub mq_secret_arn: Option<String>,
    pub max_queues: Option<i32>,
    pub accepting: bool,
}

const COLUMNS: &str = "id, amqp_url, management_url, mq_broker_arn, mq_secret_arn, max_queues, \
                       accepting, created_at, updated_at";

/// [`COLUMNS`] qualified by `alias`, for joins.
fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn from_row(r: &Row) -> BrokerRecord {
    BrokerRecord {
        id: r.get("id"),
        amqp_url: r.get("amqp_url"),
        management_url: r.get("management_url"),
        mq_broker_arn: r.get("mq_broker_arn"),
        mq_secret_arn: r.get("mq_secret_arn"),
        max_queues: r.get("max_queues"),
        accepting: r.get("accepting"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

/// A broker with what is assigned to it.
#[derive(Clone, Debug)]
pub struct BrokerUsage {
    pub broker: BrokerRecord,
    pub tenants: i64,
    pub queues: i64,
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<BrokerRecord>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM brokers WHERE id = $1"))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(from_row))
}

/// The broker the tenant lives on (`None`: no such tenant).
pub async fn of_tenant(pool: &Pool, tenant: TenantId) -> Result<Option<BrokerRecord>> {
    let client = pool.get().await?;
    let cols = columns_of("b");
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {cols} FROM tenants t JOIN brokers b ON b.id = t.broker_id WHERE t.id = $1"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&tenant.0])
        .await?
        .as_ref()
        .map(from_row))
}

/// Every broker, by id (what a process needs to reach them; see [`list_with_usage`] for counts).
pub async fn list(pool: &Pool) -> Result<Vec<BrokerRecord>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM brokers ORDER BY id"))
        .await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// Every broker with its tenants and tenant queues (the registry is small: one row per broker).
pub async fn list_with_usage(pool: &Pool) -> Result<Vec<BrokerUsage>> {
    let client = pool.get().await?;
    let cols = columns_of("b");
    let rows = client
        .query(
            &format!(
                "SELECT {cols},
                    (SELECT count(*) FROM tenants t WHERE t.broker_id = b.id) AS tenants,
                    (SELECT count(*) FROM tenants t JOIN consumer_configs c ON c.tenant_id = t.id
                      WHERE t.broker_id = b.id) AS queues
                 FROM brokers b ORDER BY b.id"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| BrokerUsage {
            broker: from_row(r),
            tenants: r.get("tenants"),
            queues: r.get("queues"),
        })
        .collect())
}

pub async fn insert(pool: &Pool, id: &str, s: &BrokerSettings) -> Result<BrokerRecord> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO brokers (id, amqp_url, management_url, mq_broker_arn, mq_secret_arn,
                                      max_queues, accepting)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &s.amqp_url,
                &s.management_url,
                &s.mq_broker_arn,
                &s.mq_secret_arn,
                &s.max_queues,
                &s.accepting,
            ],
        )
        .await;
    match row {
        Ok(row) => Ok(from_row(&row)),
        Err(e) if unique_violation(&e) == Some("brokers_pkey") => Err(Error::conflict(
            Code::BrokerExists,
            format!("a broker {id:?} is registered already"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a broker's settings (`None`: no such broker). The home broker's URLs stay null:
/// they come from the configuration.
pub async fn update(pool: &Pool, id: &str, s: &BrokerSettings) -> Result<Option<BrokerRecord>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE brokers SET amqp_url = $2, management_url = $3, mq_broker_arn = $4,
                        mq_secret_arn = $5, max_queues = $6, accepting = $7, updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &s.amqp_url,
                &s.management_url,
                &s.mq_broker_arn,
                &s.mq_secret_arn,
                &s.max_queues,
                &s.accepting,
            ],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Sets the home broker's queue budget (from `BROKER_MAX_QUEUES` at migration).
pub async fn set_home_budget(client: &tokio_postgres::Client, max_queues: u32) -> Result<()> {
    let max = i32::try_from(max_queues).unwrap_or(i32::MAX);
    client
        .execute(
            "UPDATE brokers SET max_queues = $2, updated_at = now()
             WHERE id = $1 AND max_queues IS DISTINCT FROM $2",
            &[&HOME, &max],
        )
        .await?;
    Ok(())
}

/// The broker a new tenant goes on: `requested` if given (it must exist; an admin may place a
/// tenant on a broker that no longer accepts), else the accepting broker with the most room for
/// queues (uncapped ones first, then by id). Refused when none has room for `queues` more.
pub async fn assign(
    client: &impl GenericClient,
    requested: Option<&str>,
    queues: i64,
) -> Result<String> {
    if let Some(id) = requested {
        let row = client
            .query_opt("SELECT id FROM brokers WHERE id = $1", &[&id])
            .await?;
        return match row {
            Some(_) => Ok(id.to_string()),
            None => Err(Error::NotFound(Code::BrokerNotFound)),
        };
    }
    let row = client
        .query_opt(
            "SELECT b.id FROM brokers b
             LEFT JOIN LATERAL (
                 SELECT count(*) AS n FROM tenants t JOIN consumer_configs c ON c.tenant_id = t.id
                 WHERE t.broker_id = b.id) used ON true
             WHERE b.accepting AND (b.max_queues IS NULL OR b.max_queues - used.n >= $1)
             ORDER BY b.max_queues IS NOT NULL, b.max_queues - used.n DESC, b.id
             LIMIT 1
             FOR NO KEY UPDATE OF b",
            &[&queues],
        )
        .await?;
    match row {
        Some(r) => Ok(r.get(0)),
        None => Err(Error::conflict(
            Code::BrokerBudgetExceeded,
            "no accepting broker has room for another tenant: register a broker \
             (POST /api/v1/brokers) or raise a broker's max_queues",
        )),
    }
}

/// Refuses one more queue on the tenant's broker beyond its `max_queues` (409
/// `broker_budget_exceeded`). Locks the broker's row until the transaction ends, so concurrent
/// new queues of its tenants cannot overspend it together (`FOR NO KEY UPDATE`: tenants being
/// created on it, which take a key-share lock through their foreign key, do not wait).
pub async fn check_queue_budget(client: &impl GenericClient, tenant: TenantId) -> Result<()> {
    let stmt = client
        .prepare_cached(
            "SELECT b.id, b.max_queues FROM brokers b JOIN tenants t ON t.broker_id = b.id
             WHERE t.id = $1 FOR NO KEY UPDATE OF b",
        )
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&tenant.0]).await? else {
        return Ok(());
    };
    let (id, max): (String, Option<i32>) = (row.get(0), row.get(1));
    let Some(max) = max else {
        return Ok(());
    };
    let used: i64 = client
        .query_one(
            "SELECT count(*) FROM tenants t JOIN consumer_configs c ON c.tenant_id = t.id
             WHERE t.broker_id = $1",
            &[&id],
        )
        .await?
        .get(0);
    if used >= i64::from(max) {
        return Err(Error::conflict(
            Code::BrokerBudgetExceeded,
            format!(
                "the tenant's broker {id:?} holds {used} tenant queues, its max_queues; \
                 an admin can raise it or register another broker"
            ),
        ));
    }
    Ok(())
}
