//! The jobs, executed against the Lambda API. Each reads the desired state from PostgreSQL,
//! compares it with what Lambda has, changes only the difference and records the result, so a
//! duplicate delivery finds nothing left to do.

use anyhow::{Context as _, anyhow};
use aws_sdk_lambda::{
    Client,
    primitives::Blob,
    types::{
        Environment, FunctionCode, LoggingConfig, SourceAccessConfiguration, SourceAccessType,
        VpcConfig,
    },
};
use shared::{
    AppContext,
    broker::{QueueRef, work_queue},
    control_plane::{self, Apply, Job},
    db::{self, control_state::MappingRecord},
    domain::{ConsumerConfig, QueueName, TenantId},
};

pub(crate) const APPLIED_BY: &str = "provisioner";

pub struct Provisioner {
    pub ctx: AppContext,
    pub lambda: Client,
    http: reqwest::Client,
}

impl Provisioner {
    pub fn new(ctx: AppContext, lambda: Client) -> Self {
        Self {
            ctx,
            lambda,
            http: reqwest::Client::new(),
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
        control_plane::execute(&self.ctx, self, job).await
    }

    async fn onboard(&self, tenant: TenantId) -> anyhow::Result<()> {
        let configs = db::consumer_configs::list_for_tenant(&self.ctx.db, tenant).await?;
        for c in &configs {
            let q = QueueRef::new(tenant, QueueName::parse(&c.queue_name)?);
            self.ctx.broker.ensure_queue(&q).await?;
        }
        // The tier's function, its concurrency and every queue's mapping (crate::tiers).
        self.scale(tenant).await
    }

    /// Creates the tenant function as a copy of the template's code and settings, unless it
    /// exists.
    pub async fn ensure_function(&self, tenant: TenantId) -> anyhow::Result<String> {
        let name = self.function_name(tenant);
        match self.lambda.get_function().function_name(&name).send().await {
            Ok(_) => return Ok(name),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => return Err(anyhow!("GetFunction {name}: {e:?}")),
        }
        let template = &self.ctx.config.control.function_template;
        let source = self
            .lambda
            .get_function()
            .function_name(template)
            .send()
            .await
            .map_err(|e| anyhow!("GetFunction {template} (TENANT_FUNCTION_TEMPLATE): {e:?}"))?;
        let conf = source
            .configuration
            .ok_or_else(|| anyhow!("template {template} has no configuration"))?;
        let location = source
            .code
            .and_then(|c| c.location)
            .ok_or_else(|| anyhow!("template {template} has no code location"))?;
        // The template's deployment package, through the presigned URL GetFunction returns.
        let zip = self
            .http
            .get(&location)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("downloading the template's code")?
            .bytes()
            .await?;
        let mut create = self
            .lambda
            .create_function()
            .function_name(&name)
            .set_runtime(conf.runtime)
            .set_handler(conf.handler)
            .set_role(conf.role)
            .set_memory_size(conf.memory_size)
            .set_timeout(conf.timeout)
            .set_architectures(conf.architectures)
            .description(format!("msgsvc consumer of tenant {tenant}"))
            .tags("msgsvc:tenant", tenant.to_string())
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(zip.to_vec()))
                    .build(),
            );
        if let Some(vars) = conf.environment.and_then(|e| e.variables) {
            create = create.environment(Environment::builder().set_variables(Some(vars)).build());
        }
        // The template's log format and levels; not its log group, which names the template
        // (the tenant function keeps its own default, /aws/lambda/<name>).
        if let Some(logging) = conf.logging_config {
            create = create.logging_config(
                LoggingConfig::builder()
                    .set_log_format(logging.log_format)
                    .set_application_log_level(logging.application_log_level)
                    .set_system_log_level(logging.system_log_level)
                    .build(),
            );
        }
        if let Some(vpc) = conf
            .vpc_config
            .filter(|v| v.vpc_id.as_deref().is_some_and(|id| !id.is_empty()))
        {
            create = create.vpc_config(
                VpcConfig::builder()
                    .set_subnet_ids(vpc.subnet_ids)
                    .set_security_group_ids(vpc.security_group_ids)
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {}
            // A concurrent duplicate created it first: the state we wanted.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_conflict_exception()) => {}
            Err(e) => return Err(anyhow!("CreateFunction {name}: {e:?}")),
        }
        tracing::info!(function = %name, %template, "tenant function created");
        Ok(name)
    }

    /// Creates or updates the queue's Amazon MQ event source mapping on `function` (the
    /// tenant's tier function, `crate::tiers`). Without `MQ_BROKER_ARN` (LocalStack cannot
    /// emulate Amazon MQ) the mapping is recorded as `unsupported`.
    pub async fn apply_mapping(
        &self,
        config: &ConsumerConfig,
        function: &str,
    ) -> anyhow::Result<()> {
        let tenant = config.tenant_id;
        let control = &self.ctx.config.control;
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
            };
            db::control_state::record_mapping(&self.ctx.db, tenant, &config.queue_name, &r).await
        };
        let (Some(broker), Some(secret)) = (&control.mq_broker_arn, &control.mq_secret_arn) else {
            let why =
                "MQ_BROKER_ARN and MQ_SECRET_ARN are not set: no Amazon MQ event source mapping";
            record("unsupported", None, Some(why.into())).await?;
            return Ok(());
        };
        let name = function.to_string();
        let queue = work_queue(&QueueRef::new(
            tenant,
            QueueName::parse(&config.queue_name)?,
        ));
        let window = batching.window_seconds as i32;
        let result = async {
            let existing = self
                .lambda
                .list_event_source_mappings()
                .function_name(&name)
                .event_source_arn(broker)
                .send()
                .await
                .map_err(|e| anyhow!("ListEventSourceMappings {name}: {e:?}"))?
                .event_source_mappings
                .unwrap_or_default()
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
                            .uri("/")
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| anyhow!("CreateEventSourceMapping {queue}: {e:?}"))?
                    .uuid
                    .unwrap_or_default(),
            };
            Ok::<_, anyhow::Error>(uuid)
        }
        .await;
        match result {
            Ok(uuid) => record("applied", Some(uuid), None).await?,
            Err(e) => {
                record("failed", None, Some(format!("{e:#}"))).await?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes the tenant's mappings and function; messages, configs and the tenant stay.
    async fn delete(&self, tenant: TenantId) -> anyhow::Result<()> {
        // A pooled tenant's mappings are on the pooled function.
        self.unmap_queues(tenant, &self.ctx.config.control.pooled_function)
            .await?;
        let name = self.function_name(tenant);
        let mappings = match self
            .lambda
            .list_event_source_mappings()
            .function_name(&name)
            .send()
            .await
        {
            Ok(out) => out.event_source_mappings.unwrap_or_default(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Vec::new()
            }
            Err(e) => return Err(anyhow!("ListEventSourceMappings {name}: {e:?}")),
        };
        for uuid in mappings.into_iter().filter_map(|m| m.uuid) {
            match self
                .lambda
                .delete_event_source_mapping()
                .uuid(&uuid)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) => {}
                Err(e) => return Err(anyhow!("DeleteEventSourceMapping {uuid}: {e:?}")),
            }
        }
        match self
            .lambda
            .delete_function()
            .function_name(&name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => return Err(anyhow!("DeleteFunction {name}: {e:?}")),
        }
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
        self.apply_queue(config).await
    }

    async fn scale_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        self.scale(tenant).await
    }

    async fn delete_tenant(&self, tenant: TenantId) -> anyhow::Result<()> {
        self.delete(tenant).await
    }
}
