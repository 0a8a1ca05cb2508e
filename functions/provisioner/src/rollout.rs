//! Rollouts: every tenant function is brought to the template function's code and
//! configuration, so a deploy (which updates the template function) reaches the tenants.
//!
//! Per function: read it, compare its `CodeSha256` and the settings it copies (see
//! [`crate::function_spec`]) with the template's, and send only what differs:
//! UpdateFunctionCode (code, architectures), then UpdateFunctionConfiguration (the differing
//! settings). Lambda refuses a second update while one is in progress
//! (`ResourceConflictException`); after each update the rollout waits for `LastUpdateStatus`
//! to leave `InProgress` ("Lambda function states",
//! https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html) and reports `Failed`
//! with its `LastUpdateStatusReason`. Functions are rolled `parallel` at a time; throttling,
//! conflicts and 5xx answers are retried with exponential backoff.
//!
//! Which functions: every function with the deployment's prefix that an active tenant's
//! `tenant_capacity.function_name` names (PostgreSQL is the record of what the provisioner
//! created; a ListFunctions scan would also find functions of other deployments). Each
//! template version (code hash + configuration digest) is requested once in
//! `function_rollouts`; the provisioner requests it at its cold start (a deploy starts new
//! instances) and on each reconcile pass, and runs it as the `rollout` job, under an advisory
//! lock per template.
//!
//! The code goes up as `ZipFile` (downloaded from the template's presigned `Code.Location`),
//! which Lambda limits to 50 MB ("Lambda quotas", deployment package size for direct upload:
//! https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_lambda::{
    error::ProvideErrorMetadata,
    primitives::Blob,
    types::{FunctionConfiguration, LastUpdateStatus, State},
};
use futures::StreamExt as _;
use shared::{
    control_plane::Job,
    db::{
        self,
        control_state::FunctionVersion,
        rollouts::{self, TemplateVersion},
    },
};
use tokio::sync::OnceCell;

use crate::{function_spec::FunctionSpec, jobs::Provisioner};

/// Lambda's limit on a deployment package uploaded directly (`ZipFile`).
pub const ZIP_FILE_LIMIT: usize = 50 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct RolloutOptions {
    /// Functions updated at once.
    pub parallel: usize,
    /// Reads and update calls per function before it counts as failed.
    pub attempts: u32,
    /// How long to wait for an update's `LastUpdateStatus` to leave `InProgress`.
    pub settle: Duration,
    /// Time one rollout job may take before it hands the rest to a new job (the provisioner
    /// function's timeout is 90 s).
    pub budget: Duration,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        Self {
            parallel: 4,
            attempts: 6,
            settle: Duration::from_secs(30),
            budget: Duration::from_secs(60),
        }
    }
}

/// The template function as read now.
pub struct Template {
    pub version: TemplateVersion,
    pub spec: FunctionSpec,
    location: Option<String>,
    /// Why it should not be copied now (an update of it in progress).
    pub busy: Option<String>,
}

/// What a rollout did to one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    /// The steps sent: `code` and/or the names of the settings changed.
    Updated(Vec<&'static str>),
    /// No such function (onboarding creates it).
    Missing,
    /// Its code and settings equal the template's but its last update has not finished.
    InProgress(String),
    Failed(String),
    /// Not reached within the budget; a new rollout job continues.
    Deferred,
}

#[derive(Debug, Default)]
pub struct RolloutReport {
    pub version: Option<TemplateVersion>,
    /// `false`: another rollout of the template held the lock.
    pub ran: bool,
    pub functions: Vec<(String, Outcome)>,
}

impl RolloutReport {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.functions.iter().filter(|(_, o)| f(o)).count()
    }
}

enum Failure {
    /// Throttled, conflicting with an update in progress, or a 5xx: try again.
    Retry {
        conflict: bool,
        message: String,
    },
    Missing,
    Fatal(String),
}

fn classify(op: &str, e: aws_sdk_lambda::Error) -> Failure {
    use aws_sdk_lambda::Error as E;
    let message = format!("{op}: {}", aws_sdk_lambda::error::DisplayErrorContext(&e));
    match &e {
        E::ResourceNotFoundException(_) => Failure::Missing,
        E::ResourceConflictException(_) => Failure::Retry {
            conflict: true,
            message,
        },
        E::TooManyRequestsException(_) | E::ServiceException(_) => Failure::Retry {
            conflict: false,
            message,
        },
        // No code: the request did not get an answer (timeout, connection); an unmodelled
        // code such as InternalError is a 5xx.
        _ if e
            .code()
            .is_none_or(|c| c.contains("Internal") || c.contains("Unavailable")) =>
        {
            Failure::Retry {
                conflict: false,
                message,
            }
        }
        _ => Failure::Fatal(message),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 2u64.pow(attempt.min(5)))
}

/// `State/LastUpdateStatus`, as the status API shows it.
fn update_status(c: &FunctionConfiguration) -> String {
    let state = c.state().map(State::as_str).unwrap_or("-");
    let last = c
        .last_update_status()
        .map(LastUpdateStatus::as_str)
        .unwrap_or("-");
    format!("{state}/{last}")
}

enum Settled {
    Successful,
    Failed(String),
    InProgress,
}

impl Provisioner {
    /// The template function (`TENANT_FUNCTION_TEMPLATE`) and its version.
    pub async fn template(&self) -> anyhow::Result<Template> {
        let name = &self.ctx.config.control.function_template;
        let out = self
            .lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .map_err(|e| anyhow!("GetFunction {name} (TENANT_FUNCTION_TEMPLATE): {e:?}"))?;
        let conf = out
            .configuration
            .ok_or_else(|| anyhow!("template {name} has no configuration"))?;
        let spec = FunctionSpec::from_configuration(&conf);
        let code_sha256 = spec
            .code_sha256
            .clone()
            .ok_or_else(|| anyhow!("template {name} has no CodeSha256"))?;
        let busy = (conf.state() == Some(&State::Pending)
            || conf.last_update_status() == Some(&LastUpdateStatus::InProgress))
        .then(|| format!("template {name} is {}", update_status(&conf)));
        Ok(Template {
            version: TemplateVersion {
                template_function: name.clone(),
                config_digest: spec.config_digest(),
                code_sha256,
            },
            spec,
            location: out.code.and_then(|c| c.location),
            busy,
        })
    }

    /// The template's deployment package, through the presigned URL GetFunction returns.
    pub async fn template_code(&self, t: &Template) -> anyhow::Result<Vec<u8>> {
        let location = t
            .location
            .as_deref()
            .ok_or_else(|| anyhow!("template has no code location"))?;
        let zip = self
            .http
            .get(location)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("downloading the template's code")?
            .bytes()
            .await?;
        if zip.len() > ZIP_FILE_LIMIT {
            bail!(
                "the template's package is {} bytes; Lambda takes at most 50 MB as ZipFile",
                zip.len()
            );
        }
        Ok(zip.to_vec())
    }

    /// Requests a rollout of the template's current version unless one was requested
    /// already; `true` when this call submitted the job. Cheap (one GetFunction, one row):
    /// called at every cold start and reconcile pass.
    pub async fn request_rollout(&self) -> anyhow::Result<bool> {
        let t = self.template().await?;
        if let Some(busy) = t.busy {
            tracing::info!(%busy, "template is changing; rollout requested later");
            return Ok(false);
        }
        if !rollouts::request(&self.ctx.db, &t.version).await? {
            return Ok(false);
        }
        self.ctx.control.submit(&self.ctx, Job::Rollout).await?;
        tracing::info!(version = ?t.version, "rollout requested");
        Ok(true)
    }

    /// Brings every tenant function to the template's version and records the outcome.
    pub async fn rollout(&self) -> anyhow::Result<RolloutReport> {
        let template = &self.ctx.config.control.function_template;
        // A session of its own holds the lock, so the rollout's pool connections stay free;
        // closing it (at the end, or when the process dies) releases the lock.
        let config = &self.ctx.config;
        let lock = db::tls::connect(&config.database_url, &config.database_tls).await?;
        if !rollouts::try_lock(&lock, template).await? {
            tracing::info!(%template, "another rollout of the template is running");
            return Ok(RolloutReport::default());
        }
        let t = self.template().await?;
        if let Some(busy) = &t.busy {
            bail!("{busy}: rolled out once its update finished");
        }
        let prefix = &self.ctx.config.control.function_prefix;
        let targets = db::control_state::rollout_targets(&self.ctx.db, prefix, template).await?;
        let code = OnceCell::new();
        let deadline = Instant::now() + self.rollout_options.budget;
        let functions: Vec<(String, Outcome)> = futures::stream::iter(targets)
            .map(|name| {
                let (t, code) = (&t, &code);
                async move {
                    let outcome = if Instant::now() >= deadline {
                        Outcome::Deferred
                    } else {
                        self.roll_one(t, code, &name).await
                    };
                    tracing::info!(function = %name, ?outcome, "rollout");
                    (name, outcome)
                }
            })
            .buffer_unordered(self.rollout_options.parallel.max(1))
            .collect()
            .await;
        let report = RolloutReport {
            version: Some(t.version.clone()),
            ran: true,
            functions,
        };
        let failed: Vec<String> = report
            .functions
            .iter()
            .filter_map(|(name, o)| match o {
                Outcome::Failed(e) | Outcome::InProgress(e) => Some(format!("{name}: {e}")),
                _ => None,
            })
            .collect();
        let deferred = report.count(|o| *o == Outcome::Deferred);
        let error = (!failed.is_empty()).then(|| failed.join("; "));
        let state = match (failed.is_empty(), deferred) {
            (true, 0) => "done",
            (true, _) => "requested",
            (false, _) => "failed",
        };
        rollouts::finish(
            &self.ctx.db,
            &t.version,
            &rollouts::Outcome {
                state,
                functions: report.functions.len(),
                updated: report.count(|o| matches!(o, Outcome::Updated(_))),
                failed: failed.len(),
                error: error.as_deref(),
            },
        )
        .await?;
        drop(lock);
        if deferred > 0 {
            // The rest in a new job: a function already done is compared, not updated, again.
            self.ctx.control.submit(&self.ctx, Job::Rollout).await?;
        }
        Ok(report)
    }

    async fn roll_one(&self, t: &Template, code: &OnceCell<Arc<Vec<u8>>>, name: &str) -> Outcome {
        let opts = &self.rollout_options;
        let mut sent: Vec<&'static str> = Vec::new();
        let mut last_error: Option<String> = None;
        for attempt in 0..opts.attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            let conf = match self.lambda.get_function().function_name(name).send().await {
                Ok(out) => out
                    .configuration
                    .unwrap_or_else(|| FunctionConfiguration::builder().build()),
                Err(e) => match classify("GetFunction", e.into()) {
                    Failure::Missing => return Outcome::Missing,
                    Failure::Retry { message, .. } => {
                        last_error = Some(message);
                        continue;
                    }
                    Failure::Fatal(message) => return Outcome::Failed(message),
                },
            };
            let current = FunctionSpec::from_configuration(&conf);
            if let Err(e) = self.record_version(name, t, &current, &conf).await {
                tracing::warn!(function = %name, error = format!("{e:#}"), "version not recorded");
            }
            let plan = t.spec.plan(&current);
            if plan.is_empty() {
                if sent.is_empty() && last_error.is_none() {
                    return Outcome::Unchanged;
                }
                return match self.settle(name).await {
                    Settled::Successful if last_error.is_none() => Outcome::Updated(sent),
                    Settled::Failed(reason) => Outcome::Failed(reason),
                    // Equal, but an update of ours answered an error or has not finished.
                    _ => Outcome::InProgress(format!(
                        "{}{}",
                        update_status(&conf),
                        last_error.map(|e| format!("; {e}")).unwrap_or_default()
                    )),
                };
            }
            let result = if plan.code {
                let zip = match code
                    .get_or_try_init(|| async { self.template_code(t).await.map(Arc::new) })
                    .await
                {
                    Ok(zip) => zip,
                    Err(e) => return Outcome::Failed(format!("{e:#}")),
                };
                self.lambda
                    .update_function_code()
                    .function_name(name)
                    .zip_file(Blob::new(zip.as_slice()))
                    .set_architectures(t.spec.architecture().map(|a| vec![a]))
                    .send()
                    .await
                    .map(|_| vec!["code"])
                    .map_err(|e| classify("UpdateFunctionCode", e.into()))
            } else {
                self.update_settings(name, t, &plan.settings)
                    .await
                    .map(|_| plan.settings.clone())
            };
            match result {
                Ok(steps) => {
                    sent.extend(steps);
                    last_error = None;
                    // The next update must wait for this one (ResourceConflictException).
                    if let Settled::Failed(reason) = self.settle(name).await {
                        return Outcome::Failed(reason);
                    }
                }
                Err(Failure::Missing) => return Outcome::Missing,
                Err(Failure::Fatal(message)) => return Outcome::Failed(message),
                Err(Failure::Retry { conflict, message }) => {
                    last_error = Some(message);
                    if conflict {
                        self.settle(name).await;
                    }
                }
            }
        }
        Outcome::Failed(last_error.unwrap_or_else(|| "attempts exhausted".into()))
    }

    async fn update_settings(
        &self,
        name: &str,
        t: &Template,
        fields: &[&'static str],
    ) -> Result<(), Failure> {
        let s = &t.spec.settings;
        let mut u = self
            .lambda
            .update_function_configuration()
            .function_name(name);
        for field in fields {
            u = match *field {
                "runtime" => u.set_runtime(s.runtime()),
                "handler" => u.set_handler(s.handler.clone()),
                "role" => u.set_role(s.role.clone()),
                "memory_size" => u.set_memory_size(s.memory_size),
                "timeout" => u.set_timeout(s.timeout),
                "environment" => u.environment(s.environment()),
                "ephemeral_storage" => u.set_ephemeral_storage(s.ephemeral_storage()),
                "logging" => u.set_logging_config(s.logging()),
                "vpc" => u.vpc_config(s.vpc()),
                _ => u,
            };
        }
        u.send()
            .await
            .map(|_| ())
            .map_err(|e| classify("UpdateFunctionConfiguration", e.into()))
    }

    /// Waits (up to `settle`) for the function's last update to finish.
    async fn settle(&self, name: &str) -> Settled {
        let until = Instant::now() + self.rollout_options.settle;
        let mut wait = Duration::from_millis(250);
        loop {
            if let Ok(c) = self
                .lambda
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
            {
                let pending = c.state() == Some(&State::Pending);
                match c.last_update_status() {
                    Some(LastUpdateStatus::InProgress) => {}
                    Some(LastUpdateStatus::Failed) if !pending => {
                        return Settled::Failed(format!(
                            "update failed: {}",
                            c.last_update_status_reason().unwrap_or("no reason given")
                        ));
                    }
                    _ if !pending => return Settled::Successful,
                    _ => {}
                }
            }
            if Instant::now() + wait > until {
                return Settled::InProgress;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn record_version(
        &self,
        name: &str,
        t: &Template,
        current: &FunctionSpec,
        conf: &FunctionConfiguration,
    ) -> anyhow::Result<()> {
        let digest = current.config_digest();
        let status = update_status(conf);
        let v = FunctionVersion {
            function_name: name,
            template_function: &t.version.template_function,
            code_sha256: current.code_sha256.as_deref(),
            config_digest: &digest,
            update_status: &status,
        };
        Ok(db::control_state::record_function_version(&self.ctx.db, &v).await?)
    }

    /// Reads the function and records its version next to the template's (after onboarding).
    pub async fn record_current_version(&self, name: &str) -> anyhow::Result<()> {
        let t = self.template().await?;
        let out = self
            .lambda
            .get_function()
            .function_name(name)
            .send()
            .await
            .map_err(|e| anyhow!("GetFunction {name}: {e:?}"))?;
        let conf = out
            .configuration
            .unwrap_or_else(|| FunctionConfiguration::builder().build());
        let current = FunctionSpec::from_configuration(&conf);
        self.record_version(name, &t, &current, &conf).await
    }
}
