//! The jobs, executed against the Lambda API. Each reads the desired state from PostgreSQL,
//! compares it with what Lambda has, changes only the difference and records the result, so a
//! duplicate delivery finds nothing left to do.

use std::time::Duration;

use anyhow::anyhow;
use aws_sdk_lambda::{
    Client,
    primitives::Blob,
    types::{FunctionCode, SourceAccessConfiguration, SourceAccessType},
};
use shared::{
    AppContext,
    broker::{QueueRef, work_queue},
    control_plane::{self, Apply, Job},
    db::{self, control_state::MappingRecord},
    domain::{ConsumerConfig, QueueName, TenantId, Tier},
};

use crate::{hold, mappings, reconcile::RECONCILE_EVERY, rollout::RolloutOptions};

pub(crate) const APPLIED_BY: &str = "provisioner";

pub struct Provisioner {
    pub ctx: AppContext,
    pub lambda: Client,
    pub(crate) http: reqwest::Client,
    pub rollout_options: RolloutOptions,
    /// How often the relay schedule runs a reconcile pass.
    pub reconcile_every: Duration,
}

impl Provisioner {
    pub fn new(ctx: AppContext, lambda: Client) -> Self {
        Self {
            ctx,
            lambda,
            http: reqwest::Client::new(),
            rollout_options: RolloutOptions::default(),
            reconcile_every: RECONCILE_EVERY,
        }
    }

    /// The Lambda client from the environment (`AWS_ENDPOINT_URL` for LocalStack).
    pub async fn from_env(ctx: AppContext) -> Self {
        let sdk = aws_config::load_from_env().await;
        Self::new(ctx, Client::new(&sdk))
    }

    pub fn function_name(&self, tenant: TenantId) -> String {
        format!("{}{tenant}", self.ctx.config.control.function_prefix)
    }

    pub async fn run(&self, job: &Job) -> anyhow::Result<()> {
        control_plane::execute(&self.ctx, self, job).await?;
        if *job == Job::Relay {
            // The relay's schedule also drives the reconcile; its failure is not the relay's.
            if let Err(e) = self.reconcile_when_due().await {
                tracing::warn!(error = format!("{e:#}"), "reconcile pass failed");
            }
        }
        Ok(())
    }

    async fn onboard(&self, tenant: TenantId) -> anyhow::Result<()> {
        if !hold::tenant_active(&self.ctx, tenant).await? {
            tracing::info!(tenant_id = %tenant, "tenant not active: onboarding skipped");
            return Ok(());
        }
        let configs = db::consumer_configs::list_for_tenant(&self.ctx.db, tenant).await?;
        let endpoint = self.ctx.brokers.for_tenant(&self.ctx.db, tenant).await?;
        for c in &configs {
            let q = QueueRef::new(tenant, QueueName::parse(&c.queue_name)?);
            endpoint.broker.ensure_queue(&q).await?;
        }
        // The tier's function, its concurrency and every queue's mapping (crate::tiers).
        self.scale(tenant).await?;
        if let (Tier::Dedicated, function) = self.target_function(tenant).await?
            && let Err(e) = self.record_current_version(&function).await
        {
            tracing::warn!(
                error = format!("{e:#}"),
                "tenant function version not recorded"
            );
        }
        Ok(())
    }

    /// Creates the tenant function as a copy of the template's code and settings (see
    /// `function_spec`), unless it exists or the tenant is no longer active.
    pub async fn ensure_function(&self, tenant: TenantId) -> anyhow::Result<String> {
        let name = self.function_name(tenant);
        if self.function_exists(&name).await? {
            return Ok(name);
        }
        let template = self.template().await?;
        let zip = self.template_code(&template).await?;
        let s = &template.spec.settings;
        let mut create = self
            .lambda
            .create_function()
            .function_name(&name)
            .set_runtime(s.runtime())
            .set_handler(s.handler.clone())
            .set_role(s.role.clone())
            .set_memory_size(s.memory_size)
            .set_timeout(s.timeout)
            .set_architectures(template.spec.architecture().map(|a| vec![a]))
            .environment(s.environment())
            .set_ephemeral_storage(s.ephemeral_storage())
            .set_logging_config(s.logging())
            .description(format!("msgsvc consumer of tenant {tenant}"))
            .tags("msgsvc:tenant", tenant.to_string())
            .code(FunctionCode::builder().zip_file(Blob::new(zip)).build());
        if s.has_vpc() {
            create = create.vpc_config(s.vpc());
        }
        let created = hold::while_active(&self.ctx, tenant, || async {
            match create.send().await {
                Ok(_) => Ok(()),
                // A concurrent duplicate created it first: the state we wanted.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_conflict_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(anyhow!("CreateFunction {name}: {e:?}")),
            }
        })
        .await?;
        if created.is_none() {
            anyhow::bail!("tenant {tenant} is not active: its function is not created");
        }
        tracing::info!(function = %name, template = %template.version.template_function, "tenant function created");
        Ok(name)
    }

    /// Creates or updates the queue's Amazon MQ event source mapping on `function` (the
    /// tenant's tier function, `crate::tiers`), on the tenant's broker (`broker::Brokers`).
    /// Without its ARN (LocalStack cannot emulate Amazon MQ) the mapping is recorded as
    /// `unsupported`.
    pub async fn apply_mapping(
        &self,
        config: &ConsumerConfig,
        function: &str,
    ) -> anyhow::Result<()> {
        let tenant = config.tenant_id;
        // The tenant's broker in the registry: its ARN, secret and virtual host.
        let endpoint = self.ctx.brokers.for_tenant(&self.ctx.db, tenant).await?;
        // The local event source plays the mapping with the same batching.
        let batching = self.ctx.config.consumer.mapping_batching();
        let batch_size = batching.batch_size;
        let enabled = config.enabled && config.workers > 0;
        let record = |state, mapping_id: Option<String>, error: Option<String>| async move {
            let r = MappingRecord {
                mapping_id: mapping_id.as_deref(),
                batch_size: Some(batch_size),
                enabled: Some(enabled),
                state,
                error: error.as_deref(),
                applied: true,
                ..MappingRecord::default()
            };
            db::control_state::record_mapping(&self.ctx.db, tenant, &config.queue_name, &r).await
        };
        let (Some(broker), Some(secret)) = (&endpoint.mq_broker_arn, &endpoint.mq_secret_arn)
        else {
            let why = "the tenant's broker has no Amazon MQ ARN or secret (MQ_BROKER_ARN and \
                       MQ_SECRET_ARN, or the registry's mq_broker_arn): no event source mapping";
            record("unsupported", None, Some(why.into())).await?;
            return Ok(());
        };
        let name = function.to_string();
        let queue = work_queue(&QueueRef::new(
            tenant,
            QueueName::parse(&config.queue_name)?,
        ));
        let window = batching.window_seconds as i32;
        let apply = async {
            let existing = mappings::list(&self.lambda, &name, Some(broker))
                .await
                .map_err(|e| anyhow!("ListEventSourceMappings {name}: {e:?}"))?
                .into_iter()
                .find(|m| m.queues().contains(&queue));
            let uuid = match existing.and_then(|m| m.uuid) {
                Some(uuid) => {
                    self.lambda
                        .update_event_source_mapping()
                        .uuid(&uuid)
                        .batch_size(batch_size as i32)
                        .maximum_batching_window_in_seconds(window)
                        .enabled(enabled)
                        .send()
                        .await
                        .map_err(|e| anyhow!("UpdateEventSourceMapping {uuid}: {e:?}"))?;
                    uuid
                }
                None => self
                    .lambda
                    .create_event_source_mapping()
                    .function_name(&name)
                    .event_source_arn(broker)
                    .queues(&queue)
                    .batch_size(batch_size as i32)
                    .maximum_batching_window_in_seconds(window)
                    .enabled(enabled)
                    .source_access_configurations(
                        SourceAccessConfiguration::builder()
                            .r#type(SourceAccessType::BasicAuth)
                            .uri(secret)
                            .build(),
                    )
                    .source_access_configurations(
                        SourceAccessConfiguration::builder()
                            .r#type(SourceAccessType::VirtualHost)
                            .uri(&endpoint.vhost)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| anyhow!("CreateEventSourceMapping {queue}: {e:?}"))?
                    .uuid
                    .unwrap_or_default(),
            };
            Ok::<_, anyhow::Error>(uuid)
        };
        let result = match hold::while_active(&self.ctx, tenant, || apply).await {
            Ok(None) => return Ok(()),
            Ok(Some(uuid)) => Ok(uuid),
            Err(e) => Err(e),
        };
        let uuid = match result {
            Ok(uuid) => uuid,
            Err(e) => {
                record("failed", None, Some(format!("{e:#}"))).await?;
                return Err(e);
            }
        };
        // What AWS made of it: a mapping it disabled or left in another state is `failed`.
        let (read, verdict) = match mappings::read_back(&self.lambda, &uuid).await {
            Ok(read) => {
                let v = read.verdict(enabled);
                (Some(read), v)
            }
            Err(e) => (
                None,
                mappings::Verdict {
                    state: "failed",
                    error: Some(format!("{e:#}")),
                },
            ),
        };
        let r = MappingRecord {
            mapping_id: Some(&uuid),
            batch_size: Some(batch_size),
            enabled: Some(enabled),
            state: verdict.state,
            error: verdict.error.as_deref(),
            aws_state: read.as_ref().and_then(|r| r.aws_state.as_deref()),
            state_transition_reason: read.as_ref().and_then(|r| r.transition_reason.as_deref()),
            last_processing_result: read
                .as_ref()
                .and_then(|r| r.last_processing_result.as_deref()),
            applied: true,
        };
        db::control_state::record_mapping(&self.ctx.db, tenant, &config.queue_name, &r).await?;
        match verdict {
            mappings::Verdict {
                state: "failed",
                error,
            } => Err(anyhow!("mapping {uuid}: {}", error.unwrap_or_default())),
            _ => Ok(()),
        }
    }

    /// ApplyConsumer: the tenant function and the queue's mapping, for an active tenant.
    pub(crate) async fn apply_consumer_job(&self, config: &ConsumerConfig) -> anyhow::Result<()> {
        if !hold::tenant_active(&self.ctx, config.tenant_id).await? {
            tracing::info!(tenant_id = %config.tenant_id, "tenant not active: mapping skipped");
            return Ok(());
        }
        // The mapping on the tenant's tier function (crate::tiers).
        self.apply_queue(config).await
    }

    /// Removes the tenant's mappings and function; messages, configs and the tenant stay.
    async fn delete(&self, tenant: TenantId) -> anyhow::Result<()> {
        // A pooled tenant's mappings are on the pooled function.
        self.unmap_queues(tenant, &self.ctx.config.control.pooled_function)
            .await?;
        let name = self.function_name(tenant);
        let mappings = match mappings::list(&self.lambda, &name, None).await {
            Ok(all) => all,
            Err(aws_sdk_lambda::Error::ResourceNotFoundException(_)) => Vec::new(),
            Err(e) => return Err(anyhow!("ListEventSourceMappings {name}: {e:?}")),
        };
        for uuid in mappings.into_iter().filter_map(|m| m.uuid) {
            self.delete_mapping(&uuid).await?;
        }
        self.delete_function(&name).await?;
        db::control_state::record_tenant_deleted(&self.ctx.db, tenant, &name, APPLIED_BY).await?;
        tracing::info!(function = %name, "tenant function deleted");
        Ok(())
    }
}

#[async_trait::async_trait]
impl Apply for Provisioner {
    async fn onboard_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        self.onboard(tenant).await
    }

    async fn apply_consumer(&self, config: &ConsumerConfig) -> anyhow::Result<()> {
        self.apply_consumer_job(config).await
    }

    async fn scale_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        if !hold::tenant_active(&self.ctx, tenant).await? {
            tracing::info!(tenant_id = %tenant, "tenant not active: scaling skipped");
            return Ok(());
        }
        self.scale(tenant).await
    }

    async fn delete_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        self.delete(tenant).await
    }

    async fn rollout(&self) -> anyhow::Result<()> {
        let report = Provisioner::rollout(self).await?;
        let failed = report.count(|o| {
            matches!(
                o,
                crate::rollout::Outcome::Failed(_) | crate::rollout::Outcome::InProgress(_)
            )
        });
        if failed > 0 {
            // SQS delivers the job again: functions already done are compared, not updated.
            anyhow::bail!("rollout: {failed} tenant functions not at the template's version");
        }
        Ok(())
    }

    async fn reconcile(&self) -> anyhow::Result<()> {
        let report = self.reconcile_pass().await?;
        tracing::info!(?report, "reconcile pass");
        Ok(())
    }
}
