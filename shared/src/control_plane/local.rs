//! The local control plane, the default: runs each job in process. Topology goes to the
//! broker; the tier, capacity and mappings are recorded as applied, and the local event source
//! (which plays Amazon MQ's part) reads them: a dedicated tenant's batches are capped by its
//! effective capacity, pooled tenants share one pool.

use super::{Apply, ControlPlane, Job, execute};
use crate::{
    AppContext,
    broker::QueueRef,
    db::{self, control_state::MappingRecord},
    domain::{ConsumerConfig, QueueName, TenantId},
    error::{Error, Result},
};

/// What the status API shows as the function of a dedicated tenant consumed in process.
pub const LOCAL_FUNCTION: &str = "local";
/// ... and of a pooled one.
pub const LOCAL_POOLED_FUNCTION: &str = "local-pooled";

/// Runs each job in process.
pub struct LocalControlPlane;

#[async_trait::async_trait]
impl ControlPlane for LocalControlPlane {
    async fn submit(&self, ctx: &AppContext, job: Job) -> Result<()> {
        Ok(execute(ctx, &Local { ctx }, &job).await?)
    }
}

struct Local<'a> {
    ctx: &'a AppContext,
}

impl Local<'_> {
    /// Records the tier: a dedicated tenant's effective capacity, nothing reserved when pooled.
    async fn scale(&self, tenant: TenantId) -> Result<()> {
        let effective = db::control_state::get(&self.ctx.db, tenant)
            .await?
            .and_then(|c| c.effective_concurrency);
        let function = match effective {
            Some(_) => LOCAL_FUNCTION,
            None => LOCAL_POOLED_FUNCTION,
        };
        db::control_state::record_applied(
            &self.ctx.db,
            tenant,
            effective,
            function,
            "applied",
            None,
            "local",
        )
        .await
    }

    async fn apply_queue(&self, config: &ConsumerConfig) -> Result<()> {
        let queue = QueueName::parse(&config.queue_name)?;
        let endpoint = self
            .ctx
            .brokers
            .for_tenant(&self.ctx.db, config.tenant_id)
            .await?;
        endpoint
            .broker
            .ensure_queue(&QueueRef::new(config.tenant_id, queue))
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        db::control_state::record_mapping(
            &self.ctx.db,
            config.tenant_id,
            &config.queue_name,
            &MappingRecord {
                batch_size: Some(self.ctx.config.consumer.batch_size as u32),
                enabled: Some(config.enabled && config.workers > 0),
                state: "applied",
                applied: true,
                ..MappingRecord::default()
            },
        )
        .await
    }
}

#[async_trait::async_trait]
impl Apply for Local<'_> {
    async fn onboard_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        for config in db::consumer_configs::list_for_tenant(&self.ctx.db, tenant).await? {
            self.apply_queue(&config).await?;
        }
        Ok(self.scale(tenant).await?)
    }

    async fn apply_consumer(&self, config: &ConsumerConfig) -> anyhow::Result<()> {
        self.apply_queue(config).await?;
        // An enabled or paused queue changes a dedicated tenant's effective capacity.
        Ok(self.scale(config.tenant_id).await?)
    }

    async fn scale_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        Ok(self.scale(tenant).await?)
    }

    async fn delete_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        let db = &self.ctx.db;
        Ok(db::control_state::record_tenant_deleted(db, tenant, LOCAL_FUNCTION, "local").await?)
    }
}
