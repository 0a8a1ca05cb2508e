//! Retention of settled messages. Each tenant keeps its completed messages
//! `completed_days` and its dead letters `dead_lettered_days` (its own settings, else
//! `RETENTION_COMPLETED_DAYS` / `RETENTION_DEAD_LETTERED_DAYS`; 0 keeps them for ever). The
//! sweep runs on the maintenance tick (the relay's: a task outside Lambda, the relay schedule
//! in AWS) and deletes what is due in batches of `RETENTION_BATCH`, at most
//! `RETENTION_MAX_BATCHES` per status and tick, so no statement holds many locks or runs long.
//! Only completed and dead-lettered messages are ever deleted, with their attempts. A
//! message's idempotency key is a column of its row: deleting the message frees the key.

use serde::Serialize;

pub use crate::domain::retention::{EffectiveRetention, RetentionOverrides};
use crate::{
    AppContext,
    db::{self, retention::Settled},
    domain::TenantId,
    error::{Code, Error, Result},
    observability::metrics as m,
};

/// The tenant's retention in force and its own settings, as its view shows them.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionView {
    /// In force: the tenant's own setting, else the configuration's default; 0 keeps
    /// completed messages for ever.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::domain::retention::days_in_force_schema))]
    pub completed_days: u32,
    /// In force, likewise for dead-lettered messages.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::domain::retention::days_in_force_schema))]
    pub dead_lettered_days: u32,
    /// The tenant's own settings (null fields take the configuration's default).
    pub overrides: RetentionOverrides,
}

impl RetentionView {
    fn of(overrides: RetentionOverrides, ctx: &AppContext) -> Self {
        let EffectiveRetention {
            completed_days,
            dead_lettered_days,
        } = overrides.resolve(&ctx.config.retention);
        Self {
            completed_days,
            dead_lettered_days,
            overrides,
        }
    }
}

pub async fn view(ctx: &AppContext, tenant: TenantId) -> Result<RetentionView> {
    let overrides = db::retention::overrides(&ctx.db, tenant)
        .await?
        .ok_or(Error::NotFound(Code::TenantNotFound))?;
    Ok(RetentionView::of(overrides, ctx))
}

/// Replaces the tenant's own retention (admin): 404 for an unknown tenant, 409
/// `tenant_inactive` for a deactivated one (checked under the tenant's row lock, so a
/// deactivation cannot slip in between).
pub async fn set(
    ctx: &AppContext,
    tenant: TenantId,
    overrides: &RetentionOverrides,
) -> Result<RetentionView> {
    overrides.validate()?;
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    super::tenants::lock_active(&tx, tenant).await?;
    db::retention::set(&tx, tenant, overrides).await?;
    tx.commit().await?;
    Ok(RetentionView::of(overrides.clone(), ctx))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub messages: u64,
    pub attempts: u64,
    /// Statements run.
    pub batches: u32,
}

/// One sweep: per settled status, batches until one comes back short or
/// `RETENTION_MAX_BATCHES` ran (the next tick goes on where this one stopped).
pub async fn sweep(ctx: &AppContext) -> Result<SweepReport> {
    let cfg = &ctx.config.retention;
    let mut report = SweepReport::default();
    for status in Settled::ALL {
        let default_days = match status {
            Settled::Completed | Settled::Cancelled => cfg.completed_days,
            Settled::DeadLettered => cfg.dead_lettered_days,
        };
        for _ in 0..cfg.max_batches {
            let (messages, attempts) =
                db::retention::delete_expired(&ctx.db, status, default_days, cfg.batch).await?;
            report.batches += 1;
            report.messages += messages;
            report.attempts += attempts;
            if (messages as i64) < cfg.batch {
                break;
            }
        }
    }
    // Counted every sweep, so the series exist from the first one.
    metrics::counter!(m::RETENTION_DELETED, "table" => "messages").increment(report.messages);
    metrics::counter!(m::RETENTION_DELETED, "table" => "message_attempts")
        .increment(report.attempts);
    if report.messages > 0 {
        tracing::info!(
            messages = report.messages,
            attempts = report.attempts,
            batches = report.batches,
            "retention deleted settled messages"
        );
    }
    Ok(report)
}
