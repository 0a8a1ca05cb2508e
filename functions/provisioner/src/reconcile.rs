//! The reconcile pass, every [`RECONCILE_EVERY`] on the relay schedule (whichever provisioner
//! instance runs the first relay tick after the interval claims it in PostgreSQL) and as the
//! `reconcile` job: re-applies mappings recorded `failed` (or `pending` without an id),
//! re-reads those AWS had in transition, and requests a rollout if the template changed since
//! the last one.

use std::time::Duration;

use shared::db::{self, rollouts};

use crate::{jobs::Provisioner, mappings};

pub const RECONCILE_EVERY: Duration = Duration::from_secs(300);
/// Mappings handled per pass; the rest wait for the next.
const BATCH: i64 = 50;

#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Mappings applied again (they were `failed`).
    pub reapplied: usize,
    /// Mappings read back again (they were `pending`).
    pub reread: usize,
    pub errors: Vec<String>,
}

impl Provisioner {
    /// After a relay tick: the reconcile pass, if one is due.
    pub async fn reconcile_when_due(&self) -> anyhow::Result<()> {
        if rollouts::claim_pass(&self.ctx.db, "reconcile", self.reconcile_every).await? {
            let report = self.reconcile_pass().await?;
            tracing::info!(?report, "reconcile pass");
        }
        Ok(())
    }

    pub async fn reconcile_pass(&self) -> anyhow::Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        if let Err(e) = self.request_rollout().await {
            report.errors.push(format!("rollout check: {e:#}"));
        }
        let control = &self.ctx.config.control;
        let due = db::control_state::mappings_to_reconcile(
            &self.ctx.db,
            &control.function_prefix,
            &control.pooled_function,
            BATCH,
        )
        .await?;
        for m in due {
            let outcome = match (m.state.as_str(), m.mapping_id.as_deref()) {
                ("pending", Some(uuid)) => {
                    report.reread += 1;
                    self.reread_mapping(&m, uuid).await
                }
                _ => {
                    report.reapplied += 1;
                    match db::consumer_configs::get(&self.ctx.db, m.tenant_id, &m.queue_name)
                        .await?
                    {
                        Some(config) => self.apply_consumer_job(&config).await,
                        None => Ok(()),
                    }
                }
            };
            if let Err(e) = outcome {
                report
                    .errors
                    .push(format!("{}/{}: {e:#}", m.tenant_id, m.queue_name));
            }
        }
        Ok(report)
    }

    async fn reread_mapping(
        &self,
        m: &db::control_state::Mapping,
        uuid: &str,
    ) -> anyhow::Result<()> {
        let enabled = m.enabled.unwrap_or(true);
        let (state, error, read) = match mappings::read_back(&self.lambda, uuid).await {
            Ok(read) => {
                let v = read.verdict(enabled);
                (v.state, v.error, Some(read))
            }
            Err(e) => ("failed", Some(format!("{e:#}")), None),
        };
        let record = db::control_state::MappingRecord {
            mapping_id: Some(uuid),
            batch_size: m.batch_size,
            enabled: m.enabled,
            state,
            error: error.as_deref(),
            aws_state: read.as_ref().and_then(|r| r.aws_state.as_deref()),
            state_transition_reason: read.as_ref().and_then(|r| r.transition_reason.as_deref()),
            last_processing_result: read
                .as_ref()
                .and_then(|r| r.last_processing_result.as_deref()),
            applied: false,
        };
        db::control_state::record_mapping(&self.ctx.db, m.tenant_id, &m.queue_name, &record)
            .await?;
        Ok(())
    }
}
