//! Deactivation holds: nothing is created for a tenant that is not active. Jobs are queued, so
//! an OnboardTenant, ApplyConsumer or ScaleTenant may run after the tenant's deactivation and
//! its DeleteTenant; each checks the tenant first and skips, and every create (function,
//! mapping) runs under a share lock on the tenant's row, so a deactivation either waits for a
//! create in flight (and its DeleteTenant, queued after it commits, removes what was made) or
//! commits first (and the create sees the tenant inactive).

use std::future::Future;

use shared::{AppContext, db, domain::TenantId};

/// Whether the tenant exists and is active now (a job's first check).
pub async fn tenant_active(ctx: &AppContext, tenant: TenantId) -> anyhow::Result<bool> {
    Ok(db::tenants::get(&ctx.db, tenant)
        .await?
        .is_some_and(|t| t.is_active()))
}

/// Runs `create` while holding the tenant active; `None` (and `create` never runs) when the
/// tenant is inactive or gone.
pub async fn while_active<T, F, Fut>(
    ctx: &AppContext,
    tenant: TenantId,
    create: F,
) -> anyhow::Result<Option<T>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    if db::tenants::hold_active(&tx, tenant).await? != Some(true) {
        tracing::info!(tenant_id = %tenant, "tenant not active: nothing created");
        return Ok(None);
    }
    let out = create().await;
    tx.commit().await?;
    out.map(Some)
}
