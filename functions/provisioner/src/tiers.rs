//! Which function consumes a tenant's queues, and the moves between tiers (see
//! `shared::services::capacity`):
//!
//! - `pooled` (no capacity): every queue's mapping targets the pooled function
//!   (`POOLED_CONSUMER_FUNCTION`, the stack's ConsumerFunction), which reserves nothing; the
//!   tenant has no function of its own.
//! - `dedicated` (a capacity): its own function, cloned from the template, with reserved
//!   concurrency = the effective capacity (the capacity, at most its enabled queues).
//!
//! A move loses no message: the mappings are created on the target function before the old
//! ones are deleted (meanwhile both consume the same broker queue, and a message is
//! acknowledged only after its batch was processed, so whatever the old mapping held
//! unacknowledged goes back to the queue), and a dedicated function is deleted only after its
//! mappings are gone.

use anyhow::anyhow;
use shared::{
    broker::{QueueRef, work_queue},
    db::{self, concurrency_budget::AccountReading, control_state::Capacity},
    domain::{ConsumerConfig, QueueName, TenantId, Tier},
};

use crate::jobs::{APPLIED_BY, Provisioner};

impl Provisioner {
    /// The function pooled tenants' queues map to.
    pub fn pooled_function(&self) -> &str {
        &self.ctx.config.control.pooled_function
    }

    /// The tenant's tier and the function its queues map to.
    pub async fn target_function(&self, tenant: TenantId) -> anyhow::Result<(Tier, String)> {
        Ok(match self.capacity(tenant).await?.tier {
            Tier::Dedicated => (Tier::Dedicated, self.function_name(tenant)),
            Tier::Pooled => (Tier::Pooled, self.pooled_function().to_string()),
        })
    }

    async fn capacity(&self, tenant: TenantId) -> anyhow::Result<Capacity> {
        Ok(shared::services::capacity::view(&self.ctx, tenant).await?)
    }

    /// Brings the tenant to its tier: the target function (and its reserved concurrency), every
    /// queue's mapping on it, then the old tier's mappings (and dedicated function) removed.
    /// Records what it applied, or why not.
    pub async fn scale(&self, tenant: TenantId) -> anyhow::Result<()> {
        let capacity = self.capacity(tenant).await?;
        let result = match capacity.tier {
            Tier::Dedicated => {
                let effective = capacity.effective_concurrency.unwrap_or(0);
                self.to_dedicated(tenant, effective).await
            }
            Tier::Pooled => self.to_pooled(tenant).await,
        };
        self.record(tenant, capacity.tier, result).await
    }

    /// One queue's mapping on the tenant's tier function after its config changed; for a
    /// dedicated tenant also the reserved concurrency, since an enabled or paused queue changes
    /// the effective capacity.
    pub async fn apply_queue(&self, config: &ConsumerConfig) -> anyhow::Result<()> {
        let tenant = config.tenant_id;
        let capacity = self.capacity(tenant).await?;
        match capacity.tier {
            Tier::Pooled => self.apply_mapping(config, self.pooled_function()).await,
            Tier::Dedicated => {
                let name = self.ensure_function(tenant).await?;
                self.apply_mapping(config, &name).await?;
                let effective = capacity.effective_concurrency.unwrap_or(0);
                let result = self.reserve(&name, effective).await.map(|n| (n, name));
                self.record(tenant, Tier::Dedicated, result).await
            }
        }
    }

    async fn to_dedicated(
        &self,
        tenant: TenantId,
        effective: u32,
    ) -> anyhow::Result<(Option<u32>, String)> {
        let name = self.ensure_function(tenant).await?;
        let applied = self.reserve(&name, effective).await?;
        self.map_queues(tenant, &name).await?;
        self.unmap_queues(tenant, self.pooled_function()).await?;
        Ok((applied, name))
    }

    async fn to_pooled(&self, tenant: TenantId) -> anyhow::Result<(Option<u32>, String)> {
        let pooled = self.pooled_function().to_string();
        self.map_queues(tenant, &pooled).await?;
        let own = self.function_name(tenant);
        if self.function_exists(&own).await? {
            self.unmap_queues(tenant, &own).await?;
            self.delete_function(&own).await?;
            tracing::info!(function = %own, "tenant moved to the pooled tier; its function deleted");
        }
        Ok((None, pooled))
    }

    /// Sets the function's reserved concurrency and reads it back.
    async fn reserve(&self, name: &str, concurrency: u32) -> anyhow::Result<Option<u32>> {
        self.lambda
            .put_function_concurrency()
            .function_name(name)
            .reserved_concurrent_executions(concurrency as i32)
            .send()
            .await
            .map_err(|e| anyhow!("PutFunctionConcurrency {name}: {e:?}"))?;
        let got = self
            .lambda
            .get_function_concurrency()
            .function_name(name)
            .send()
            .await
            .map_err(|e| anyhow!("GetFunctionConcurrency {name}: {e:?}"))?
            .reserved_concurrent_executions;
        Ok(got.map(|n| n as u32))
    }

    /// Every queue's mapping on `function`; each failure is recorded by `apply_mapping`, and
    /// the job fails (to be retried) when any did.
    async fn map_queues(&self, tenant: TenantId, function: &str) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        for c in db::consumer_configs::list_for_tenant(&self.ctx.db, tenant).await? {
            if let Err(e) = self.apply_mapping(&c, function).await {
                failed.push(format!("{}: {e:#}", c.queue_name));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("mappings failed: {}", failed.join("; ")))
        }
    }

    /// Deletes `function`'s mappings of the tenant's queues (all of them on the tenant's own
    /// function; on the pooled one only this tenant's). Without its broker's ARN no mapping was
    /// ever created.
    pub(crate) async fn unmap_queues(
        &self,
        tenant: TenantId,
        function: &str,
    ) -> anyhow::Result<()> {
        let endpoint = self.ctx.brokers.for_tenant(&self.ctx.db, tenant).await?;
        let Some(broker) = &endpoint.mq_broker_arn else {
            return Ok(());
        };
        let queues: Vec<String> = db::consumer_configs::list_for_tenant(&self.ctx.db, tenant)
            .await?
            .iter()
            .filter_map(|c| QueueName::parse(&c.queue_name).ok())
            .map(|q| work_queue(&QueueRef::new(tenant, q)))
            .collect();
        let own = function == self.function_name(tenant);
        let mappings = match crate::mappings::list(&self.lambda, function, Some(broker)).await {
            Ok(m) => m,
            Err(aws_sdk_lambda::Error::ResourceNotFoundException(_)) => return Ok(()),
            Err(e) => return Err(anyhow!("ListEventSourceMappings {function}: {e:?}")),
        };
        for m in mappings {
            let ours = own || m.queues().iter().any(|q| queues.contains(q));
            let Some(uuid) = m.uuid.filter(|_| ours) else {
                continue;
            };
            self.delete_mapping(&uuid).await?;
            tracing::info!(%function, %uuid, "mapping of the old tier deleted");
        }
        Ok(())
    }

    /// Deletes one mapping; one already gone is the state wanted.
    pub(crate) async fn delete_mapping(&self, uuid: &str) -> anyhow::Result<()> {
        match self
            .lambda
            .delete_event_source_mapping()
            .uuid(uuid)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow!("DeleteEventSourceMapping {uuid}: {e:?}")),
        }
    }

    pub(crate) async fn function_exists(&self, name: &str) -> anyhow::Result<bool> {
        match self.lambda.get_function().function_name(name).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow!("GetFunction {name}: {e:?}")),
        }
    }

    pub(crate) async fn delete_function(&self, name: &str) -> anyhow::Result<()> {
        match self
            .lambda
            .delete_function()
            .function_name(name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(anyhow!("DeleteFunction {name}: {e:?}")),
        }
    }

    /// Records the tier's applied state (reserved concurrency, function), or the failure.
    async fn record(
        &self,
        tenant: TenantId,
        tier: Tier,
        result: anyhow::Result<(Option<u32>, String)>,
    ) -> anyhow::Result<()> {
        let db = &self.ctx.db;
        match result {
            Ok((applied, function)) => {
                db::control_state::record_applied(
                    db, tenant, applied, &function, "applied", None, APPLIED_BY,
                )
                .await?;
                Ok(())
            }
            Err(e) => {
                let function = match tier {
                    Tier::Dedicated => self.function_name(tenant),
                    Tier::Pooled => self.pooled_function().to_string(),
                };
                let msg = format!("{e:#}");
                db::control_state::record_applied(
                    db,
                    tenant,
                    None,
                    &function,
                    "failed",
                    Some(&msg),
                    APPLIED_BY,
                )
                .await?;
                Err(e)
            }
        }
    }

    /// Reads the account's concurrency (GetAccountSettings) into PostgreSQL, where the API's
    /// concurrency budget reads it: `AccountLimit.ConcurrentExecutions`, and what functions
    /// other than tenant functions reserve (`ConcurrentExecutions` −
    /// `UnreservedConcurrentExecutions` − what tenant functions have applied; a tenant change
    /// applied in between skews it until the next reading). A failure is logged: the budget
    /// keeps the last reading (or AWS's default).
    pub async fn refresh_account_limit(&self) -> Option<AccountReading> {
        let limit = match self.lambda.get_account_settings().send().await {
            Ok(out) => out.account_limit?,
            Err(e) => {
                tracing::warn!(error = ?e, "GetAccountSettings failed; the concurrency budget keeps its last reading");
                return None;
            }
        };
        let total = u32::try_from(limit.concurrent_executions)
            .ok()
            .filter(|n| *n > 0)?;
        let unreserved = limit
            .unreserved_concurrent_executions
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(total);
        let stored = async {
            let tenants = db::concurrency_budget::applied_by_tenants(&self.ctx.db).await?;
            let reading = AccountReading {
                concurrent_executions: total,
                reserved_outside_tenants: total.saturating_sub(unreserved).saturating_sub(tenants),
            };
            db::concurrency_budget::store_account(&self.ctx.db, reading).await?;
            Ok::<_, shared::Error>(reading)
        }
        .await;
        let reading = match stored {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot store the account's concurrency");
                return None;
            }
        };
        if let Some(setting) = self.ctx.config.control.account_concurrency
            && setting != total
        {
            tracing::warn!(
                setting,
                aws = total,
                "LAMBDA_ACCOUNT_CONCURRENCY overrides the account limit AWS reports"
            );
        }
        tracing::info!(?reading, "account concurrency refreshed");
        Some(reading)
    }
}
