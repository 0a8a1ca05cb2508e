//! Per-tenant limits: publish rate (a token bucket in PostgreSQL, shared by every API instance),
//! queues per tenant, message size and stored backlog. Each tenant's overrides fall back to the
//! environment defaults (`TENANT_*`).
//!
//! Cost on the publish path: the tenant's limits come from an in-process cache (one query per
//! tenant every `TENANT_LIMITS_CACHE_TTL`); a rate limit adds one round trip that refills and
//! takes tokens on the tenant's own row of an UNLOGGED table (no WAL flush at commit); the backlog is counted at most once per TTL per tenant
//! and instance (and counted on locally in between). An unlimited setting costs nothing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;

pub use crate::domain::limits::{EffectiveLimits, LimitOverrides, TenantStanding};
use crate::{
    AppContext, db,
    domain::TenantId,
    error::{Code, Error, Result},
};

/// Per-instance cache of tenants' limits and backlog counts. Per-tenant entries: one tenant's
/// refresh never waits on another's.
#[derive(Default)]
pub struct LimitsCache {
    entries: Mutex<HashMap<TenantId, Entry>>,
}

#[derive(Clone)]
struct Entry {
    read_at: Instant,
    standing: TenantStanding,
    /// The last backlog count and when it was read; messages accepted since are added.
    backlog: Option<(Instant, u64)>,
}

impl LimitsCache {
    fn fresh(&self, tenant: TenantId, ttl: Duration) -> Option<TenantStanding> {
        let entries = self.entries.lock().expect("limits cache lock");
        entries
            .get(&tenant)
            .filter(|e| e.read_at.elapsed() < ttl)
            .map(|e| e.standing.clone())
    }

    fn store(&self, tenant: TenantId, standing: TenantStanding) {
        let mut entries = self.entries.lock().expect("limits cache lock");
        let backlog = entries.get(&tenant).and_then(|e| e.backlog);
        entries.insert(
            tenant,
            Entry {
                read_at: Instant::now(),
                standing,
                backlog,
            },
        );
    }

    /// Forgets the tenant (its limits changed through this instance).
    pub fn invalidate(&self, tenant: TenantId) {
        self.entries
            .lock()
            .expect("limits cache lock")
            .remove(&tenant);
    }

    /// The cached backlog while fresh. When stale, the first caller gets `None` (and counts);
    /// callers meanwhile keep the old figure, so concurrent publishes do not all count at once.
    fn backlog(&self, tenant: TenantId, ttl: Duration) -> Option<u64> {
        let mut entries = self.entries.lock().expect("limits cache lock");
        let slot = entries.get_mut(&tenant)?.backlog.as_mut()?;
        if slot.0.elapsed() < ttl {
            return Some(slot.1);
        }
        slot.0 = Instant::now();
        None
    }

    fn set_backlog(&self, tenant: TenantId, n: u64) {
        let mut entries = self.entries.lock().expect("limits cache lock");
        if let Some(e) = entries.get_mut(&tenant) {
            e.backlog = Some((Instant::now(), n));
        }
    }

    /// Counts messages this instance stored since the last backlog count.
    pub fn add_backlog(&self, tenant: TenantId, n: u64) {
        let mut entries = self.entries.lock().expect("limits cache lock");
        if let Some((_, count)) = entries.get_mut(&tenant).and_then(|e| e.backlog.as_mut()) {
            *count += n;
        }
    }
}

/// The tenant's limits in force (cached); 404 for an unknown tenant, 409 for an inactive one.
pub async fn effective(ctx: &AppContext, tenant: TenantId) -> Result<EffectiveLimits> {
    let defaults = &ctx.config.limits.tenant;
    let standing = match ctx.limits.fresh(tenant, defaults.cache_ttl) {
        Some(s) => s,
        None => {
            let s = db::limits::standing(&ctx.db, tenant)
                .await?
                .ok_or(Error::NotFound(Code::TenantNotFound))?;
            ctx.limits.store(tenant, s.clone());
            s
        }
    };
    if !standing.active {
        return Err(Error::tenant_inactive());
    }
    Ok(standing.overrides.resolve(defaults))
}

/// Admits `n` messages of the tenant: takes `n` tokens from its bucket and checks that its
/// stored backlog stays within the limit. 429 `rate_limited` / `backlog_limit_reached`.
pub async fn admit_publish(
    ctx: &AppContext,
    tenant: TenantId,
    limits: &EffectiveLimits,
    n: u32,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    if limits.max_backlog > 0 {
        let ttl = ctx.config.limits.tenant.cache_ttl;
        let (current, counted_now) = match ctx.limits.backlog(tenant, ttl) {
            Some(b) => (b, false),
            None => {
                let client = ctx.db.get().await?;
                let b = db::limits::backlog(&client, tenant, limits.max_backlog + 1).await?;
                (b, true)
            }
        };
        if current + n as u64 > limits.max_backlog {
            if counted_now {
                ctx.limits.set_backlog(tenant, current);
            }
            return Err(Error::LimitExceeded {
                code: Code::BacklogLimitReached,
                message: format!(
                    "the tenant has {current} unsettled messages stored; its backlog limit is {}",
                    limits.max_backlog
                ),
                retry_after_secs: ttl.as_secs().max(1),
            });
        }
        if counted_now {
            ctx.limits.set_backlog(tenant, current);
        }
    }
    if limits.publish_rate > 0.0 {
        if n > limits.publish_burst {
            return Err(Error::invalid(
                Code::BatchExceedsBurst,
                format!(
                    "a publish of {n} messages can never fit the tenant's burst of {}",
                    limits.publish_burst
                ),
            ));
        }
        if let Some(wait) = db::limits::take_tokens(
            &ctx.db,
            tenant,
            n,
            limits.publish_rate,
            limits.publish_burst,
        )
        .await?
        {
            return Err(Error::LimitExceeded {
                code: Code::RateLimited,
                message: format!(
                    "the tenant's publish rate of {} messages per second is exhausted",
                    limits.publish_rate
                ),
                retry_after_secs: (wait.ceil() as u64).max(1),
            });
        }
    }
    Ok(())
}

/// Refuses a new queue beyond the tenant's `max_queues` (409 `queue_limit_reached`) or its
/// broker's (409 `broker_budget_exceeded`). A queue that already exists always passes.
pub async fn check_new_queue(
    client: &impl deadpool_postgres::GenericClient,
    tenant: TenantId,
    queue: &str,
    limits: &EffectiveLimits,
) -> Result<()> {
    let (count, exists) = db::limits::queue_count(client, tenant, queue).await?;
    if exists {
        return Ok(());
    }
    if limits.max_queues != 0 && count >= limits.max_queues as u64 {
        return Err(Error::conflict(
            Code::QueueLimitReached,
            format!("the tenant has {count} queues, its limit (max_queues); an admin can raise it"),
        ));
    }
    db::brokers::check_queue_budget(client, tenant).await
}

/// The tenant's limits and usage, as its view shows them.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitsView {
    pub limits: EffectiveLimits,
    /// The tenant's own settings (null fields take the environment default).
    pub overrides: LimitOverrides,
    pub usage: Usage,
}

#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub queues: u64,
    /// Unsettled messages, counted up to `max_backlog + 1` (or 100000 when unlimited).
    pub backlog: u64,
    /// Tokens in the publish bucket now (absent when the rate is unlimited).
    pub publish_tokens: Option<f64>,
}

pub async fn view(ctx: &AppContext, tenant: TenantId) -> Result<LimitsView> {
    let standing = db::limits::standing(&ctx.db, tenant)
        .await?
        .ok_or(Error::NotFound(Code::TenantNotFound))?;
    let limits = standing.overrides.resolve(&ctx.config.limits.tenant);
    let client = ctx.db.get().await?;
    let (queues, _) = db::limits::queue_count(&client, tenant, "").await?;
    let cap = if limits.max_backlog > 0 {
        limits.max_backlog + 1
    } else {
        100_000
    };
    let backlog = db::limits::backlog(&client, tenant, cap).await?;
    drop(client);
    let publish_tokens = if limits.publish_rate > 0.0 {
        Some(
            db::limits::tokens_available(
                &ctx.db,
                tenant,
                limits.publish_rate,
                limits.publish_burst,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(LimitsView {
        limits,
        overrides: standing.overrides,
        usage: Usage {
            queues,
            backlog,
            publish_tokens,
        },
    })
}

/// Sets the tenant's overrides (admin); returns the new view.
pub async fn set(
    ctx: &AppContext,
    tenant: TenantId,
    overrides: &LimitOverrides,
) -> Result<LimitsView> {
    overrides.validate()?;
    super::tenants::get_active(ctx, tenant).await?;
    db::limits::set(&ctx.db, tenant, overrides).await?;
    ctx.limits.invalidate(tenant);
    view(ctx, tenant).await
}
