//! Tenant capacity and tiers. A tenant without a capacity is `pooled`: its queues are consumed
//! by the shared pooled consumer function, which reserves nothing, so the account's concurrency
//! limit does not cap the number of tenants. A tenant given a capacity is `dedicated`: its own
//! function, whose reserved concurrency is the effective capacity (the capacity, at most its
//! number of enabled queues).
//!
//! A capacity is checked against the account's concurrency budget before it is stored, so
//! before anything reaches AWS: it may not leave the account less than the 100 unreserved
//! concurrency AWS requires. The budget counts each dedicated tenant's requested capacity, not
//! its effective one: the effective figure rises to it as queues are enabled, and that must
//! never need a second check that could fail.

use deadpool_postgres::GenericClient;

use crate::{
    AppContext, Config,
    control_plane::{self, Job},
    db::{self, concurrency_budget, control_state::Capacity},
    domain::{
        ConcurrencyBudget, TenantId, Tier, capacity::DEFAULT_ACCOUNT_CONCURRENCY,
        tenant::RESERVED_CONCURRENCY,
    },
    error::{Code, Error, Result},
};

/// The account's limit and where it comes from: `LAMBDA_ACCOUNT_CONCURRENCY` when set (an
/// operator's override), else what the provisioner last read from GetAccountSettings, else
/// AWS's default; and what functions other than tenant functions reserve: at least
/// `STACK_RESERVED_CONCURRENCY`, more when the provisioner's last reading found more.
async fn account(client: &impl GenericClient, config: &Config) -> Result<(u32, &'static str, u32)> {
    let reading = concurrency_budget::stored_account(client).await?;
    let outside = reading.map_or(0, |r| r.reserved_outside_tenants);
    let stack = config.control.stack_reserved_concurrency.max(outside);
    Ok(match (config.control.account_concurrency, reading) {
        (Some(n), _) => (n, "setting", stack),
        (None, Some(r)) => (r.concurrent_executions, "aws", stack),
        (None, None) => (DEFAULT_ACCOUNT_CONCURRENCY, "default", stack),
    })
}

/// The budget `requested` would be checked against for `tenant` (`None`: every tenant counts
/// as another).
pub async fn budget(
    client: &impl GenericClient,
    config: &Config,
    tenant: Option<TenantId>,
    requested: u32,
) -> Result<ConcurrencyBudget> {
    let (limit, source, stack) = account(client, config).await?;
    let others = concurrency_budget::reserved_by_others(client, tenant).await?;
    Ok(ConcurrencyBudget::new(
        limit, source, others, stack, requested,
    ))
}

/// Concurrency left unreserved once every dedicated tenant has its capacity: what pooled
/// tenants share (the local event source sizes the pooled gate with it).
pub async fn pooled_concurrency(ctx: &AppContext) -> Result<u32> {
    let client = ctx.db.get().await?;
    Ok(budget(&client, &ctx.config, None, 0).await?.unreserved())
}

/// Stores the tenant's capacity (`None`: pooled) after checking it against the budget, and asks
/// the control plane to apply it; returns the state after the request (applied at once
/// locally, `pending` until the provisioner ran in AWS). Lowering a capacity, or keeping it, is
/// never refused: it frees concurrency, even in an account that shrank below its reservations.
pub async fn set(ctx: &AppContext, id: TenantId, requested: Option<i64>) -> Result<Capacity> {
    let requested = match requested {
        Some(n) if !RESERVED_CONCURRENCY.contains(n) => {
            return Err(Error::invalid(
                Code::InvalidCapacity,
                format!(
                    "reserved_concurrency must be within {}..={} (0 pauses the tenant)",
                    RESERVED_CONCURRENCY.min, RESERVED_CONCURRENCY.max
                ),
            ));
        }
        n => n.map(|n| n as u32),
    };
    let mut client = ctx.db.get().await?;
    let tx = client.transaction().await?;
    super::tenants::lock_active(&tx, id).await?;
    concurrency_budget::lock(&tx).await?;
    if let Some(n) = requested {
        let previous = concurrency_budget::requested(&tx, id).await?;
        let budget = budget(&tx, &ctx.config, Some(id), n).await?;
        if !budget.fits() && previous.is_none_or(|p| n > p) {
            tracing::info!(tenant_id = %id, ?budget, "capacity refused: over the concurrency budget");
            return Err(Error::BudgetExceeded(Box::new(budget)));
        }
    }
    db::control_state::set_desired_in(&tx, id, requested).await?;
    tx.commit().await?;
    control_plane::request(ctx, Job::ScaleTenant { tenant_id: id }).await;
    view(ctx, id).await
}

/// The tenant's tier with its requested, effective and applied capacity. A tenant the control
/// plane has not handled yet shows as pooled and `pending`.
pub async fn view(ctx: &AppContext, id: TenantId) -> Result<Capacity> {
    super::tenants::get(ctx, id).await?;
    Ok(db::control_state::get(&ctx.db, id)
        .await?
        .unwrap_or_else(|| Capacity {
            tenant_id: id,
            tier: Tier::Pooled,
            desired_concurrency: None,
            effective_concurrency: None,
            applied_concurrency: None,
            function_name: None,
            state: "pending".into(),
            error: None,
            applied_by: None,
            updated_at: chrono::Utc::now(),
            code_sha256: None,
            template_code_sha256: None,
            up_to_date: None,
            update_status: None,
            version_checked_at: None,
        }))
}
