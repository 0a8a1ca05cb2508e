//! Dead letters: messages that failed every attempt. Kept in PostgreSQL with their last error,
//! listable, and redriven with a fresh attempt budget.

use serde::Serialize;

use crate::{
    AppContext, db,
    domain::{MessageId, QueueName, TenantId},
    error::Result,
};

/// Which dead letters a redrive takes.
#[derive(Clone, Debug, Default)]
pub struct RedriveSelector {
    pub queue_name: Option<QueueName>,
    pub ids: Option<Vec<MessageId>>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct RedriveReport {
    pub redriven: usize,
    /// Of those, the ones the broker confirmed now; the rest the relay republishes.
    pub queued: usize,
}

const CHUNK: i64 = 1000;

pub async fn redrive(
    ctx: &AppContext,
    tenant: TenantId,
    sel: &RedriveSelector,
) -> Result<RedriveReport> {
    super::tenants::get_active(ctx, tenant).await?;
    let mut report = RedriveReport {
        redriven: 0,
        queued: 0,
    };
    let ids: Option<Vec<uuid::Uuid>> = sel.ids.as_ref().map(|v| v.iter().map(|i| i.0).collect());
    loop {
        let batch = db::messages::reset_dead_letters(
            &ctx.db,
            tenant,
            sel.queue_name.as_ref().map(|q| q.as_str()),
            ids.as_deref(),
            CHUNK,
        )
        .await?;
        if batch.is_empty() {
            break;
        }
        let refs: Vec<_> = batch.iter().collect();
        let confirmed = crate::outbox::enqueue(ctx, tenant, &refs).await;
        report.redriven += batch.len();
        report.queued += confirmed.len();
        if (batch.len() as i64) < CHUNK {
            break;
        }
    }
    tracing::info!(%tenant, redriven = report.redriven, "dead letters redriven");
    Ok(report)
}
