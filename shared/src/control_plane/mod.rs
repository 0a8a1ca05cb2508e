//! The control plane: applies a tenant's capacity and its queues' consumer settings to
//! whatever runs the consumers. Callers store the desired state in PostgreSQL first, then
//! submit a [`Job`]; every job reads the desired state afresh and is idempotent, so running it
//! twice (a duplicate SQS delivery) or late is harmless.
//!
//! Two implementations: [`local::LocalControlPlane`] (in process: broker topology and the local
//! event source's concurrency per tier, the default) and, with the `aws` feature,
//! [`sqs::SqsControlPlane`] (jobs on SQS, executed by the provisioner with the Lambda API).

pub mod local;
#[cfg(feature = "aws")]
pub mod sqs;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    AppContext,
    config::{Config, ControlPlaneKind},
    db,
    domain::{ConsumerConfig, TenantId},
    error::{Code, Error, Result},
};

/// A control-plane job, JSON tagged by `kind` (`{"kind":"relay"}` is the scheduled relay).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Job {
    /// Broker topology, the tenant function, its capacity and one mapping per queue.
    OnboardTenant { tenant_id: TenantId },
    /// One queue's mapping (batch size, enabled) after its consumer config changed.
    ApplyConsumer {
        tenant_id: TenantId,
        queue_name: String,
    },
    /// The tenant's tier from its capacity setting: pooled (its mappings on the pooled
    /// function) or dedicated (its own function, reserved concurrency = effective capacity).
    ScaleTenant { tenant_id: TenantId },
    /// Removes the tenant's mappings and function; its data stays.
    DeleteTenant { tenant_id: TenantId },
    /// One sweep of the outbox relay.
    Relay,
    /// Brings every tenant function to the template function's code and configuration.
    Rollout,
    /// Retries failed mappings, re-reads those in transition, and requests a rollout when the
    /// template changed (the provisioner also runs it every few relay ticks).
    Reconcile,
}

#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync {
    /// Runs the job now (local) or queues it for the provisioner (AWS).
    async fn submit(&self, ctx: &AppContext, job: Job) -> Result<()>;
}

/// What applies each kind of job's desired state: the local control plane in process, the
/// provisioner with the Lambda API. [`execute`] is the one place a job's kind is matched.
#[async_trait::async_trait]
pub trait Apply: Send + Sync {
    async fn onboard_tenant(&self, tenant: TenantId) -> anyhow::Result<()>;
    async fn apply_consumer(&self, config: &ConsumerConfig) -> anyhow::Result<()>;
    async fn scale_tenant(&self, tenant: TenantId) -> anyhow::Result<()>;
    async fn delete_tenant(&self, tenant: TenantId) -> anyhow::Result<()>;
    /// Nothing to roll out where consumers run in process (the default).
    async fn rollout(&self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Nothing to reconcile where every job applies at once (the default).
    async fn reconcile(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Runs one job with `apply`; the relay sweep is the same everywhere.
pub async fn execute(ctx: &AppContext, apply: &dyn Apply, job: &Job) -> anyhow::Result<()> {
    tracing::info!(?job, "control job");
    match job {
        Job::OnboardTenant { tenant_id } => apply.onboard_tenant(*tenant_id).await,
        Job::ApplyConsumer {
            tenant_id,
            queue_name,
        } => {
            let config = db::consumer_configs::get(&ctx.db, *tenant_id, queue_name)
                .await?
                .ok_or(Error::NotFound(Code::ConsumerNotFound))?;
            apply.apply_consumer(&config).await
        }
        Job::ScaleTenant { tenant_id } => apply.scale_tenant(*tenant_id).await,
        Job::DeleteTenant { tenant_id } => apply.delete_tenant(*tenant_id).await,
        Job::Rollout => apply.rollout().await,
        Job::Reconcile => apply.reconcile().await,
        Job::Relay => crate::outbox::relay::tick(ctx)
            .await
            .map(|_| ())
            .map_err(Into::into),
    }
}

/// The control plane `CONTROL_PLANE` selects.
pub fn from_config(config: &Config) -> Arc<dyn ControlPlane> {
    match config.control.kind {
        ControlPlaneKind::Local => Arc::new(local::LocalControlPlane),
        #[cfg(feature = "aws")]
        ControlPlaneKind::Aws => Arc::new(sqs::SqsControlPlane::new(
            config.control.queue_url.clone().unwrap_or_default(),
        )),
        #[cfg(not(feature = "aws"))]
        ControlPlaneKind::Aws => {
            tracing::warn!(
                "CONTROL_PLANE=aws needs the aws feature; using the local control plane"
            );
            Arc::new(local::LocalControlPlane)
        }
    }
}

/// Submits a job after its desired state was stored. A failure leaves the desired state in
/// place (the status API shows it unapplied) and is logged rather than failing the request
/// that already changed the data; submitting the same change again retries it.
pub async fn request(ctx: &AppContext, job: Job) {
    if let Err(e) = ctx.control.submit(ctx, job.clone()).await {
        tracing::warn!(error = %e, ?job, "control-plane job not submitted; desired state stays unapplied");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_tagged_by_kind() {
        assert_eq!(
            serde_json::from_str::<Job>(r#"{"kind":"relay"}"#).unwrap(),
            Job::Relay
        );
        let id = TenantId::generate();
        let job = Job::ScaleTenant { tenant_id: id };
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"kind":"scale_tenant","tenant_id":"{id}"}}"#)
        );
        assert!(serde_json::from_str::<Job>(r#"{"kind":"reboot"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Job>(r#"{"kind":"rollout"}"#).unwrap(),
            Job::Rollout
        );
    }
}
