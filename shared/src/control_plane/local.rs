//! The local control plane, the default: runs each job in process. Topology goes to the
//! broker; capacity and mappings are recorded as applied, and the local event source (which
//! plays Amazon MQ's part) reads the tenant's capacity to cap how many of its batches run at
//! once.

use super::{ControlPlane, Job, effective_concurrency};
use crate::{
    AppContext,
    broker::QueueRef,
    db::{self, control_state::MappingRecord},
    domain::{ConsumerConfig, QueueName, TenantId},
    error::{Code, Error, Result},
};

/// What the status API shows as the function of a tenant consumed in process.
pub const LOCAL_FUNCTION: &str = "local";

pub struct LocalControlPlane {
    ctx: AppContext,
}

impl LocalControlPlane {
    pub fn new(ctx: AppContext) -> Self {
        Self { ctx }
    }

    async fn scale(&self, tenant: TenantId) -> Result<()> {
        let desired = db::control_state::get(&self.ctx.db, tenant)
            .await?
            .and_then(|c| c.desired_concurrency);
        let applied = effective_concurrency(&self.ctx, desired);
        db::control_state::record_applied(
            &self.ctx.db,
            tenant,
            Some(applied),
            LOCAL_FUNCTION,
            "applied",
            None,
            "local",
        )
        .await
    }

    async fn apply_queue(&self, config: &ConsumerConfig) -> Result<()> {
        let queue = QueueName::parse(&config.queue_name)?;
        self.ctx
            .broker
            .ensure_queue(&QueueRef::new(config.tenant_id, queue))
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        db::control_state::record_mapping(
            &self.ctx.db,
            config.tenant_id,
            &config.queue_name,
            &MappingRecord {
                mapping_id: None,
                batch_size: Some(self.ctx.config.consumer.batch_size as u32),
                enabled: Some(config.enabled && config.workers > 0),
                state: "applied",
                error: None,
            },
        )
        .await
    }
}

#[async_trait::async_trait]
impl ControlPlane for LocalControlPlane {
    async fn submit(&self, job: Job) -> Result<()> {
        let db = &self.ctx.db;
        match job {
            Job::OnboardTenant { tenant_id } => {
                for config in db::consumer_configs::list_for_tenant(db, tenant_id).await? {
                    self.apply_queue(&config).await?;
                }
                self.scale(tenant_id).await
            }
            Job::ApplyConsumer {
                tenant_id,
                queue_name,
            } => match db::consumer_configs::get(db, tenant_id, &queue_name).await? {
                Some(config) => self.apply_queue(&config).await,
                None => Err(Error::NotFound(Code::ConsumerNotFound)),
            },
            Job::ScaleTenant { tenant_id } => self.scale(tenant_id).await,
            Job::DeleteTenant { tenant_id } => {
                db::control_state::record_tenant_deleted(db, tenant_id, LOCAL_FUNCTION, "local")
                    .await
            }
            Job::Relay => crate::outbox::relay::run_once(&self.ctx).await.map(|_| ()),
        }
    }
}
