//! Tenant lifecycle.

use crate::control_plane::{self, Job};
use crate::{
    AppContext, db,
    domain::{Page, PageRequest, QueueName, Tenant, TenantId, TenantName},
    error::{Code, Error, Result},
};

/// Every new tenant gets this queue with the default consumer configuration.
pub const DEFAULT_QUEUE: &str = "default";

/// Creates a tenant with its default queue, on `broker` if an admin names one, else on the
/// accepting broker with the most room (`db::brokers::assign`).
pub async fn create(ctx: &AppContext, name: &TenantName, broker: Option<&str>) -> Result<Tenant> {
    if let Some(id) = broker {
        super::brokers::validate_id(id)?;
    }
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    // The default queue is the tenant's first, so its broker needs room for one.
    let broker_id = db::brokers::assign(&tx, broker, 1).await?;
    let tenant = db::tenants::insert(&tx, TenantId::generate(), name, &broker_id).await?;
    let queue = QueueName::parse(DEFAULT_QUEUE)?;
    db::consumer_configs::ensure_default(&tx, tenant.id, &queue, &ctx.config.consumer).await?;
    tx.commit().await?;
    let job = Job::OnboardTenant {
        tenant_id: tenant.id,
    };
    control_plane::request(ctx, job).await;
    Ok(tenant)
}

pub async fn get(ctx: &AppContext, id: TenantId) -> Result<Tenant> {
    db::tenants::get(&ctx.db, id)
        .await?
        .ok_or(Error::NotFound(Code::TenantNotFound))
}

/// The tenant, which must exist and be active (publishing and consuming need both).
pub async fn get_active(ctx: &AppContext, id: TenantId) -> Result<Tenant> {
    let tenant = get(ctx, id).await?;
    if !tenant.is_active() {
        return Err(Error::tenant_inactive());
    }
    Ok(tenant)
}

/// Locks the tenant's row for a change to its queues, which it must exist and be active for
/// (see `db::tenants::lock_for_change`).
pub async fn lock_active(tx: &impl deadpool_postgres::GenericClient, id: TenantId) -> Result<()> {
    match db::tenants::lock_for_change(tx, id).await? {
        None => Err(Error::NotFound(Code::TenantNotFound)),
        Some(false) => Err(Error::tenant_inactive()),
        Some(true) => Ok(()),
    }
}

pub async fn list(ctx: &AppContext, page: &PageRequest) -> Result<Page<Tenant>> {
    let rows = db::tenants::list_all(&ctx.db, page).await?;
    Ok(Page::from_rows(rows, page, |t| t.id.0))
}

/// Deactivates the tenant: its data stays, publishing is refused, consumers stop.
/// Deactivates the tenant and asks the control plane to remove its consumers.
pub async fn deactivate(ctx: &AppContext, id: TenantId) -> Result<Tenant> {
    let tenant = db::tenants::deactivate(&ctx.db, id)
        .await?
        .ok_or(Error::NotFound(Code::TenantNotFound))?;
    control_plane::request(ctx, Job::DeleteTenant { tenant_id: id }).await;
    Ok(tenant)
}

/// Stores the tenant's capacity (`None`: pooled) within the concurrency budget and asks the
/// control plane to apply it (see `services::capacity`).
pub async fn set_capacity(
    ctx: &AppContext,
    id: TenantId,
    reserved_concurrency: Option<i64>,
) -> Result<db::control_state::Capacity> {
    super::capacity::set(ctx, id, reserved_concurrency).await
}

/// The tenant's tier with its requested, effective and applied capacity.
pub async fn capacity(ctx: &AppContext, id: TenantId) -> Result<db::control_state::Capacity> {
    super::capacity::view(ctx, id).await
}
