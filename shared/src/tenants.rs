//! Tenant lifecycle.

use crate::{
    AppContext, db,
    domain::{Page, PageRequest, QueueName, Tenant, TenantId, TenantName},
    error::{Error, Result},
};

/// Every new tenant gets this queue with the default consumer configuration.
pub const DEFAULT_QUEUE: &str = "default";

pub async fn create(ctx: &AppContext, name: &TenantName) -> Result<Tenant> {
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    let tenant = db::tenants::insert(&tx, TenantId::generate(), name).await?;
    let queue = QueueName::parse(DEFAULT_QUEUE)?;
    db::consumer_configs::ensure_default(&tx, tenant.id, &queue, &ctx.config.consumer).await?;
    tx.commit().await?;
    Ok(tenant)
}

pub async fn get(ctx: &AppContext, id: TenantId) -> Result<Tenant> {
    db::tenants::get(&ctx.db, id)
        .await?
        .ok_or(Error::NotFound("tenant"))
}

/// The tenant, which must exist and be active (publishing and consuming need both).
pub async fn get_active(ctx: &AppContext, id: TenantId) -> Result<Tenant> {
    let tenant = get(ctx, id).await?;
    if !tenant.is_active() {
        return Err(Error::conflict(
            "tenant_inactive",
            "the tenant is deactivated and accepts no messages",
        ));
    }
    Ok(tenant)
}

pub async fn list(ctx: &AppContext, page: &PageRequest) -> Result<Page<Tenant>> {
    let rows = db::tenants::list_all(&ctx.db, page).await?;
    Ok(Page::from_rows(rows, page, |t| t.id.0))
}

/// Deactivates the tenant: its data stays, publishing is refused, consumers stop.
pub async fn deactivate(ctx: &AppContext, id: TenantId) -> Result<Tenant> {
    db::tenants::deactivate(&ctx.db, id)
        .await?
        .ok_or(Error::NotFound("tenant"))
}
