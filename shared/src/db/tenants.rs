use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Pool, unique_violation};
use crate::{
    domain::{PageRequest, Tenant, TenantId, TenantName, TenantStatus},
    error::{Code, Error, Result},
};

const COLUMNS: &str = "id, name, status, broker_id, created_at, updated_at";

fn from_row(row: &Row) -> Tenant {
    Tenant {
        id: TenantId(row.get("id")),
        name: row.get("name"),
        status: match row.get::<_, &str>("status") {
            "active" => TenantStatus::Active,
            _ => TenantStatus::Inactive,
        },
        broker_id: row.get("broker_id"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

pub async fn insert(
    client: &deadpool_postgres::Transaction<'_>,
    id: TenantId,
    name: &TenantName,
    broker_id: &str,
) -> Result<Tenant> {
    let sql = format!(
        "INSERT INTO tenants (id, name, broker_id) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    );
    match client
        .query_one(&sql, &[&id.0, &name.as_str(), &broker_id])
        .await
    {
        Ok(row) => Ok(from_row(&row)),
        Err(e) if unique_violation(&e) == Some("tenants_name_key") => Err(Error::conflict(
            Code::TenantNameTaken,
            format!("a tenant named {:?} already exists", name.as_str()),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(pool: &Pool, id: TenantId) -> Result<Option<Tenant>> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM tenants WHERE id = $1");
    let stmt = client.prepare_cached(&sql).await?;
    Ok(client
        .query_opt(&stmt, &[&id.0])
        .await?
        .as_ref()
        .map(from_row))
}

/// A page of every tenant, newest first: after the cursor `$1` when `after` (then `$2` the
/// limit), else from the first (`$1` the limit). Two texts, as in `messages::list_sql`.
pub fn list_all_sql(after: bool) -> String {
    if after {
        format!("SELECT {COLUMNS} FROM tenants WHERE id < $1::uuid ORDER BY id DESC LIMIT $2::int8")
    } else {
        format!("SELECT {COLUMNS} FROM tenants ORDER BY id DESC LIMIT $1::int8")
    }
}

/// Every tenant, newest first (admin view).
pub async fn list_all(pool: &Pool, page: &PageRequest) -> Result<Vec<Tenant>> {
    let client = pool.get().await?;
    let limit = page.fetch_limit();
    let rows = match &page.after {
        Some(after) => client.query(&list_all_sql(true), &[after, &limit]).await?,
        None => client.query(&list_all_sql(false), &[&limit]).await?,
    };
    Ok(rows.iter().map(from_row).collect())
}

pub async fn deactivate(pool: &Pool, id: TenantId) -> Result<Option<Tenant>> {
    let client = pool.get().await?;
    let sql = format!(
        "UPDATE tenants SET status = 'inactive', updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    );
    Ok(client
        .query_opt(&sql, &[&id.0])
        .await?
        .as_ref()
        .map(from_row))
}

/// Whether the tenant is active (`None`: no such tenant), locking its row until the transaction
/// ends: changes to the tenant's queues serialise on it, and a deactivation waits for them (and
/// they for it), so no queue is created past `max_queues` or for a deactivated tenant.
pub async fn lock_for_change(client: &impl GenericClient, id: TenantId) -> Result<Option<bool>> {
    let stmt = client
        .prepare_cached("SELECT status = 'active' FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
        .await?;
    Ok(client.query_opt(&stmt, &[&id.0]).await?.map(|r| r.get(0)))
}

/// Whether the tenant is active (`None`: no such tenant), holding a share lock on its row until
/// the transaction ends: the control plane creates a tenant's function or mapping under it, so
/// a deactivation (which updates the row) waits for a create in flight, and a create after it
/// sees the tenant inactive.
pub async fn hold_active(client: &impl GenericClient, id: TenantId) -> Result<Option<bool>> {
    let stmt = client
        .prepare_cached("SELECT status = 'active' FROM tenants WHERE id = $1 FOR SHARE")
        .await?;
    Ok(client.query_opt(&stmt, &[&id.0]).await?.map(|r| r.get(0)))
}
