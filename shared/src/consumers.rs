//! Consumer configuration per tenant queue. The local event source re-reads it within a second
//! or two; the consumer function reads it per batch.

use crate::{
    AppContext, db,
    domain::{ConsumerConfig, ConsumerConfigUpdate, TenantId},
    error::Result,
};

pub async fn configure(
    ctx: &AppContext,
    tenant: TenantId,
    update: &ConsumerConfigUpdate,
) -> Result<ConsumerConfig> {
    crate::tenants::get(ctx, tenant).await?;
    let config =
        db::consumer_configs::upsert(&ctx.db, tenant, update, &ctx.config.consumer).await?;
    tracing::info!(%tenant, queue = %config.queue_name, workers = config.workers,
        enabled = config.enabled, "consumer config changed");
    Ok(config)
}

pub async fn list(ctx: &AppContext, tenant: TenantId) -> Result<Vec<ConsumerConfig>> {
    crate::tenants::get(ctx, tenant).await?;
    db::consumer_configs::list_for_tenant(&ctx.db, tenant).await
}

/// Every tenant queue (admin).
pub async fn list_all(ctx: &AppContext) -> Result<Vec<ConsumerConfig>> {
    db::consumer_configs::list_all(&ctx.db).await
}
