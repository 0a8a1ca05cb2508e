use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use shared::{
    AppContext,
    auth::Authenticator,
    control_plane::{ControlPlane, Job},
    db,
    domain::TenantId,
};

#[derive(Clone)]
pub struct ApiState {
    pub ctx: AppContext,
    pub auth: Arc<Authenticator>,
    /// Applies capacity and consumer changes (`CONTROL_PLANE`: local or aws).
    pub control: Arc<dyn ControlPlane>,
    /// Queues this instance saw with a consumer mapping requested (see `ensure_consumed`).
    consumed: Arc<Mutex<HashSet<(TenantId, String)>>>,
}

impl ApiState {
    /// Panics on an unreadable key configuration; `try_new` reports it instead.
    pub fn new(ctx: AppContext) -> Self {
        Self::try_new(ctx).expect("JWT key configuration")
    }

    pub fn try_new(ctx: AppContext) -> anyhow::Result<Self> {
        let auth = Arc::new(Authenticator::from_config(
            &ctx.config.jwt_secret,
            &ctx.config.jwt,
        )?);
        let control = shared::control_plane::from_context(&ctx);
        Ok(Self {
            ctx,
            auth,
            control,
            consumed: Arc::default(),
        })
    }

    /// A publish creates its queue when it is new; in AWS nothing consumes that queue until
    /// the control plane created its event source mapping. So the first time this instance
    /// sees a queue, it asks for the mapping unless one is recorded (one query per queue per
    /// instance; the job is idempotent, so instances racing on a new queue are harmless).
    pub async fn ensure_consumed<'a>(
        &self,
        tenant: TenantId,
        queues: impl IntoIterator<Item = &'a str>,
    ) {
        let unseen: Vec<String> = {
            let seen = self.consumed.lock().expect("consumed queues lock");
            let mut v: Vec<String> = queues
                .into_iter()
                .filter(|q| !seen.contains(&(tenant, q.to_string())))
                .map(str::to_string)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        if unseen.is_empty() {
            return;
        }
        let mapped: HashSet<String> =
            match db::control_state::list_mappings(&self.ctx.db, Some(tenant)).await {
                Ok(m) => m.into_iter().map(|m| m.queue_name).collect(),
                Err(e) => {
                    // Asked again on the next publish to the queue.
                    tracing::warn!(error = %e, "cannot read consumer mappings");
                    return;
                }
            };
        for queue in unseen {
            if !mapped.contains(&queue) {
                let job = Job::ApplyConsumer {
                    tenant_id: tenant,
                    queue_name: queue.clone(),
                };
                if let Err(e) = self.control.submit(job).await {
                    // Not marked seen: the next publish to the queue asks again.
                    tracing::warn!(error = %e, %queue, "consumer mapping not requested");
                    continue;
                }
            }
            self.consumed
                .lock()
                .expect("consumed queues lock")
                .insert((tenant, queue));
        }
    }
}
