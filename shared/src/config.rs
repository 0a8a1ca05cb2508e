//! Configuration from environment variables (what Lambda and SAM pass), with defaults that work
//! against the local services. A bad value fails start-up with a message naming the variable.

use std::{env, str::FromStr, time::Duration};

use crate::domain::duration::parse_duration;

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// Every prepared statement here is keyed by primary or unique keys (LATERAL lookups for id
/// arrays), so one generic plan fits all executions; without this PostgreSQL re-plans
/// array-parameter statements on every call. A plan is re-made when the statistics of a table
/// it reads change, which `db::statistics::refresh` sees to while tables are young.
pub const DEFAULT_DATABASE_OPTIONS: &str = "-c plan_cache_mode=force_generic_plan";

/// `Debug` redacts secrets: the JWT secret and URL passwords never reach a log line.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: usize,
    /// The `options` startup parameter of pooled connections (`DATABASE_OPTIONS`): by default
    /// `-c plan_cache_mode=force_generic_plan` (see `db::pool`); set but empty, none is sent,
    /// as RDS Proxy requires (it refuses `options`; its InitQuery sets the mode instead).
    pub database_options: Option<String>,
    pub database_tls: DatabaseTls,
    pub rabbitmq_url: String,
    /// The RabbitMQ management API, for queue depths (`RABBITMQ_MANAGEMENT_URL`; `off` disables).
    pub rabbitmq_management_url: Option<String>,
    /// The tenant-queue budget of the deployment's own broker (`BROKER_MAX_QUEUES`, from the
    /// README's sizing table), written to its registry row by `db::migrate`; unset leaves the
    /// row as an admin last set it (`PUT /api/v1/brokers/default`).
    pub broker_max_queues: Option<u32>,
    /// Where the consumer process serves its Prometheus metrics outside Lambda.
    pub consumer_metrics_port: u16,
    pub server_host: String,
    pub server_port: u16,
    pub jwt_secret: String,
    /// Verification of identity-provider tokens (RS256/ES256), issuer, audience, claim names.
    pub jwt: JwtConfig,
    pub consumer: ConsumerDefaults,
    pub limits: Limits,
    pub relay: RelayConfig,
    pub retention: RetentionConfig,
    pub webhook: WebhookConfig,
    /// Serve Prometheus text at `metrics_path` (`METRICS_ENABLED`; default on outside Lambda
    /// only: inside Lambda metrics reach CloudWatch as EMF, and the route would be public).
    pub metrics_enabled: bool,
    pub metrics_path: String,
    /// `metrics_path` needs an admin token (`METRICS_REQUIRE_AUTH`; default on inside Lambda,
    /// off outside, so a local Prometheus scrapes without one).
    pub metrics_require_auth: bool,
    pub log_level: String,
    pub log_format: LogFormat,
    pub cors_allowed_origins: Vec<String>,
    pub control: ControlConfig,
}

/// Where tenant capacity and consumer mappings are applied (see `control_plane`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlPlaneKind {
    /// In process: broker topology and the local event source's per-tenant concurrency.
    Local,
    /// Jobs on SQS, executed by the provisioner function with the Lambda API.
    Aws,
}

#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub kind: ControlPlaneKind,
    /// The SQS queue of control jobs (`CONTROL_QUEUE_URL`; required when `CONTROL_PLANE=aws`).
    pub queue_url: Option<String>,
    /// The consumer function tenant functions are cloned from.
    pub function_template: String,
    /// Tenant function name = prefix + tenant id.
    pub function_prefix: String,
    pub mq_broker_arn: Option<String>,
    pub mq_secret_arn: Option<String>,
    /// The function every pooled tenant's queues map to (`POOLED_CONSUMER_FUNCTION`; default
    /// the template function, the stack's ConsumerFunction). It has no reserved concurrency.
    pub pooled_function: String,
    /// The account's concurrency limit as configured (`LAMBDA_ACCOUNT_CONCURRENCY`): when set it
    /// overrides what the provisioner last read from GetAccountSettings; unset, that reading
    /// counts, or AWS's default of 1000 before the first one.
    pub account_concurrency: Option<u32>,
    /// Reserved concurrency of the stack's own functions (`STACK_RESERVED_CONCURRENCY`), which
    /// the concurrency budget leaves to them.
    pub stack_reserved_concurrency: u32,
}

/// How bearer tokens are verified besides HS256 with `JWT_SECRET`. Public keys are not secret,
/// so `Debug` shows this whole.
#[derive(Clone, Debug, Default)]
pub struct JwtConfig {
    /// Accept HS256 tokens signed with `JWT_SECRET` (`JWT_HS256_ENABLED`; default: only when no
    /// public key or JWKS is configured).
    pub hs256_enabled: bool,
    /// PEM public keys, RSA or EC P-256 (`JWT_PUBLIC_KEYS`: the PEM text, several blocks allowed,
    /// or a file path).
    pub public_keys_pem: Option<String>,
    /// A JWKS document's URL (`JWT_JWKS_URL`), fetched on first use, again after
    /// `jwks_cache_ttl` and when a token names an unknown `kid`.
    pub jwks_url: Option<String>,
    /// A JWKS document inline or as a file path (`JWT_JWKS`).
    pub jwks: Option<String>,
    pub jwks_cache_ttl: Duration,
    /// Least time between two fetches triggered by unknown `kid`s (`JWT_JWKS_MIN_REFRESH`).
    pub jwks_min_refresh: Duration,
    /// Accepted `iss` values (`JWT_ISSUER`, comma-separated; empty: not checked).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (`JWT_AUDIENCE`, comma-separated; empty: not checked).
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`/`nbf` (`JWT_LEEWAY`).
    pub leeway: Duration,
    /// The claim naming the role (`JWT_ROLE_CLAIM`, default `role`): a string or an array of
    /// strings (e.g. `cognito:groups`) containing `admin` or `tenant`.
    pub role_claim: String,
    /// The claim holding the tenant id (`JWT_TENANT_CLAIM`, default `tenant_id`; e.g.
    /// `custom:tenant_id` for Cognito).
    pub tenant_claim: String,
}

/// Lambda's longest function timeout.
pub const MAX_FUNCTION_TIMEOUT: Duration = Duration::from_secs(900);

/// Time a message needs beyond its processing timeout to be settled (outcome written, retry
/// parked), and what a batch keeps in hand before its deadline to put back what it did not start.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(5);

/// Defaults for a tenant queue's consumer, and how the local event source batches.
#[derive(Clone, Debug)]
pub struct ConsumerDefaults {
    pub default_workers: u32,
    pub max_workers: u32,
    pub retry_attempts: u32,
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    pub processing_timeout: Duration,
    /// The consumer (and tenant) functions' timeout (`CONSUMER_FUNCTION_TIMEOUT`, the SAM
    /// parameter `ConsumerTimeoutSeconds`): a batch must finish inside it. Inside Lambda the
    /// invocation's own deadline is used; this sizes the config check and the local event source.
    pub function_timeout: Duration,
    pub batch_size: usize,
    pub batch_window: Duration,
    /// How often the local event source re-reads consumer configs.
    pub config_poll_interval: Duration,
    /// When set, the local event source invokes the consumer function through the Lambda
    /// Invoke API at this base URL (e.g. `http://127.0.0.1:9000` under `cargo lambda watch`).
    pub invoke_endpoint: Option<String>,
    pub function_name: String,
    /// Restricts the local event source to these tenants (`CONSUMER_TENANTS`, comma-separated
    /// ids), so a consumer process can be dedicated to some tenants. Empty: every tenant.
    pub tenants: Vec<crate::domain::TenantId>,
    /// The most queue consumers (one channel each) the local event source puts on one broker
    /// connection (`CONSUMER_CHANNELS_PER_CONNECTION`); more queues open more connections.
    pub channels_per_connection: usize,
}

/// RabbitMQ's default `channel_max`: the most channels one connection may open (since 3.7.5).
pub const BROKER_CHANNEL_MAX: usize = 2047;

/// Queue consumers per broker connection by default: well below [`BROKER_CHANNEL_MAX`], so a
/// broker configured with a lower `channel_max` still fits them.
pub const DEFAULT_CHANNELS_PER_CONNECTION: usize = 500;

impl ConsumerDefaults {
    /// The fewest workers with which a full batch finishes inside the function timeout: the
    /// batch runs in rounds of `workers` messages, each round up to the processing timeout,
    /// and the last needs `SETTLE_MARGIN` to settle.
    pub fn min_workers(&self) -> u32 {
        min_workers(
            self.batch_size,
            self.processing_timeout,
            self.function_timeout,
        )
    }
}

/// The longest batching window an event source mapping takes (`MaximumBatchingWindowInSeconds`
/// ranges over 0..=300).
pub const MAX_BATCHING_WINDOW_SECS: u32 = 300;

/// How a tenant queue's Amazon MQ event source mapping batches: what the provisioner gives
/// `CreateEventSourceMapping`/`UpdateEventSourceMapping`, and what the local event source plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingBatching {
    /// `BatchSize` (1..=10,000, checked at load).
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds`: whole seconds only.
    pub window_seconds: u32,
}

impl MappingBatching {
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_seconds.into())
    }
}

impl ConsumerDefaults {
    /// The mapping's batching from `CONSUMER_BATCH_SIZE` and `CONSUMER_BATCH_WINDOW`. The API
    /// takes the window in whole seconds, 0 to 300, so the window is cut to whole seconds and
    /// capped at 300: a sub-second `CONSUMER_BATCH_WINDOW` (the default 50ms) is a window of 0,
    /// which sends a batch as soon as there are records, with what has arrived. Amazon MQ's own
    /// default of 500 ms never applies, since the window is always set.
    pub fn mapping_batching(&self) -> MappingBatching {
        MappingBatching {
            batch_size: self.batch_size as u32,
            window_seconds: self
                .batch_window
                .as_secs()
                .min(MAX_BATCHING_WINDOW_SECS.into()) as u32,
        }
    }
}

fn min_workers(batch_size: usize, processing: Duration, function: Duration) -> u32 {
    let usable = function.saturating_sub(SETTLE_MARGIN).as_millis();
    let rounds = (usable / processing.as_millis().max(1)).max(1);
    (batch_size as u128).div_ceil(rounds) as u32
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_items: usize,
    /// The longest a publish may delay a message (`MESSAGE_MAX_DELAY`, at least 7 days).
    pub max_delay: Duration,
    pub max_page_size: u32,
    /// Per-tenant limits that apply unless the tenant has its own (`PUT .../limits`).
    pub tenant: TenantLimitDefaults,
}

/// Environment defaults of the per-tenant limits. 0 means unlimited where noted.
#[derive(Clone, Debug)]
pub struct TenantLimitDefaults {
    /// Messages per second refilled into the tenant's bucket (`TENANT_PUBLISH_RATE`, 0: unlimited).
    pub publish_rate: f64,
    /// Bucket size: the most messages published at once (`TENANT_PUBLISH_BURST`).
    pub publish_burst: u32,
    /// Queues a tenant may have (`TENANT_MAX_QUEUES`, 0: unlimited).
    pub max_queues: u32,
    /// Largest message body (`TENANT_MAX_MESSAGE_BYTES`, default `MESSAGE_MAX_BODY_BYTES`).
    pub max_message_bytes: u32,
    /// Unsettled messages (scheduled, pending, queued, processing, retrying) a tenant may have
    /// stored (`TENANT_MAX_BACKLOG`, 0: unlimited).
    pub max_backlog: u64,
    /// How long an instance keeps a tenant's limits and backlog count before reading them again
    /// (`TENANT_LIMITS_CACHE_TTL`).
    pub cache_ttl: Duration,
}

/// TLS to PostgreSQL (`DATABASE_SSLMODE`, `DATABASE_SSLROOTCERT`).
#[derive(Clone, Debug)]
pub struct DatabaseTls {
    pub mode: DbSslMode,
    /// PEM bundle of trusted CAs, for `verify-full`.
    pub root_cert: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbSslMode {
    Disable,
    /// Encrypted, certificate not checked (libpq's `require`).
    Require,
    /// Encrypted, certificate chain and host name checked.
    VerifyFull,
}

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub enabled: bool,
    pub interval: Duration,
    /// A message still `pending` this long after its last change is republished.
    pub stale_after: Duration,
    pub batch: i64,
    /// How long one sweep waits for the broker to confirm its copies.
    pub publish_timeout: Duration,
    /// A `queued` message this old, on a queue whose work queue holds nothing ready, has lost
    /// its broker copy.
    pub lost_after: Duration,
}

/// Retention of settled messages: the defaults of tenants without their own, and the sweep's
/// batches (`services::retention`).
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Days a completed message is kept (`RETENTION_COMPLETED_DAYS`, 0: for ever).
    pub completed_days: u32,
    /// Days a dead-lettered message is kept (`RETENTION_DEAD_LETTERED_DAYS`, 0: for ever).
    pub dead_lettered_days: u32,
    /// Messages deleted per statement (`RETENTION_BATCH`).
    pub batch: i64,
    /// Statements per sweep at most (`RETENTION_MAX_BATCHES`); the next tick goes on.
    pub max_batches: u32,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub timeout: Duration,
    /// Allow endpoints on private, loopback and link-local addresses (local development).
    pub allow_private: bool,
    /// Allow plain `http://` endpoints (local development).
    pub allow_http: bool,
    /// How many bytes of an endpoint's answer each attempt keeps
    /// (`ATTEMPT_RESPONSE_EXCERPT_BYTES`, 0: none, at most [`MAX_RESPONSE_EXCERPT_BYTES`]).
    pub response_excerpt_bytes: usize,
}

/// The most of an answer's body an attempt keeps: attempts are many, and the point is a hint.
pub const MAX_RESPONSE_EXCERPT_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

/// The log format and filter. Inside Lambda the function's logging configuration (advanced
/// logging controls) wins: Lambda passes its log format and application log level to a custom
/// runtime as `AWS_LAMBDA_LOG_FORMAT` (`JSON`, `Text`) and `AWS_LAMBDA_LOG_LEVEL` (`TRACE` ..
/// `FATAL`), see <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html>.
/// Without them, `LOG_FORMAT` (json in Lambda, text elsewhere) and `LOG_LEVEL` (a `RUST_LOG`-style
/// filter, default info).
fn logging(v: &Vars<'_>, in_lambda: bool) -> Result<(LogFormat, String), ConfigError> {
    let lambda = |var| if in_lambda { v.get(var) } else { None };
    let format = match lambda("AWS_LAMBDA_LOG_FORMAT") {
        Some(f) => LogFormat::parse(&f)
            .ok_or_else(|| v.error("AWS_LAMBDA_LOG_FORMAT", "must be JSON or Text"))?,
        None => LogFormat::parse(&v.string("LOG_FORMAT", if in_lambda { "json" } else { "text" }))
            .ok_or_else(|| v.error("LOG_FORMAT", "must be json or text"))?,
    };
    let level = match lambda("AWS_LAMBDA_LOG_LEVEL") {
        // tracing has no FATAL: its most severe level is ERROR.
        Some(l) => match l.to_ascii_uppercase().as_str() {
            "TRACE" => "trace",
            "DEBUG" => "debug",
            "INFO" => "info",
            "WARN" => "warn",
            "ERROR" | "FATAL" => "error",
            _ => {
                return Err(v.error(
                    "AWS_LAMBDA_LOG_LEVEL",
                    "must be TRACE, DEBUG, INFO, WARN, ERROR or FATAL",
                ));
            }
        }
        .to_string(),
        None => v.string("LOG_LEVEL", "info"),
    };
    Ok((format, level))
}

fn retention(v: &Vars<'_>) -> Result<RetentionConfig, ConfigError> {
    let days = |var: &'static str, default: u32| -> Result<u32, ConfigError> {
        let d: u32 = v.parse(var, default)?;
        let range = crate::domain::retention::RETENTION_DAYS;
        if !range.contains(i64::from(d)) {
            return Err(v.error(var, "must be 0 (for ever) to 3650 days"));
        }
        Ok(d)
    };
    let batch: i64 = v.parse("RETENTION_BATCH", 1000)?;
    if !(1..=100_000).contains(&batch) {
        return Err(v.error("RETENTION_BATCH", "must be 1 to 100000"));
    }
    let max_batches: u32 = v.parse("RETENTION_MAX_BATCHES", 10)?;
    if max_batches == 0 {
        return Err(v.error("RETENTION_MAX_BATCHES", "must be at least 1"));
    }
    Ok(RetentionConfig {
        completed_days: days("RETENTION_COMPLETED_DAYS", 7)?,
        dead_lettered_days: days("RETENTION_DEAD_LETTERED_DAYS", 30)?,
        batch,
        max_batches,
    })
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| env::var(k).ok())
    }

    /// A binary's configuration: the environment over the configuration file named by
    /// `config_arg` (`--config`, see `config_file::take_config_arg`) or `CONFIG_FILE`, if any.
    pub fn load(config_arg: Option<String>) -> Result<Self, ConfigError> {
        let path = config_arg.or_else(|| {
            env::var(crate::config_file::CONFIG_FILE_VAR)
                .ok()
                .filter(|p| !p.trim().is_empty())
        });
        match path {
            None => Self::from_env(),
            Some(path) => {
                let file = crate::config_file::ConfigFile::load(&path)?;
                Self::from_lookup_and_file(|k| env::var(k).ok(), &file)
            }
        }
    }

    /// `lookup` (the environment) over `file`: a variable that is set wins. A key of the file
    /// that names no variable the service reads is refused, so a typo does not pass silently.
    pub fn from_lookup_and_file(
        lookup: impl Fn(&str) -> Option<String>,
        file: &crate::config_file::ConfigFile,
    ) -> Result<Self, ConfigError> {
        let asked = std::cell::RefCell::new(std::collections::HashSet::new());
        let config = Self::from_lookup(|k| {
            asked.borrow_mut().insert(k.to_string());
            lookup(k).or_else(|| file.get(k))
        })?;
        // The names read on the defaults' path too: a variable read only while another is unset
        // (DATABASE_HOST without DATABASE_URL) is a known key all the same.
        let _ = Self::from_lookup(|k| {
            asked.borrow_mut().insert(k.to_string());
            None
        });
        let asked = asked.into_inner();
        if let Some((var, key)) = file.keys().find(|(var, _)| !asked.contains(*var)) {
            return Err(ConfigError {
                var: crate::config_file::CONFIG_FILE_VAR,
                value: file.path.clone(),
                reason: format!(
                    "unknown key `{key}`: it would set {var}, which the service does not read"
                ),
            });
        }
        Ok(config)
    }

    /// Reads configuration through `lookup`, so tests can supply variables without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let v = Vars { lookup: &lookup };
        let in_lambda = lookup("AWS_LAMBDA_RUNTIME_API").is_some();

        let database_url = match lookup("DATABASE_URL") {
            Some(url) if !url.is_empty() => url,
            _ => {
                let host = v.string("DATABASE_HOST", "127.0.0.1");
                let port: u16 = v.parse("DATABASE_PORT", 5432)?;
                let user = v.string("DATABASE_USER", "postgres");
                let password = v.string("DATABASE_PASSWORD", "");
                let dbname = v.string("DATABASE_DBNAME", "msgsvc");
                let auth = if password.is_empty() {
                    user
                } else {
                    format!("{user}:{password}")
                };
                format!("postgres://{auth}@{host}:{port}/{dbname}")
            }
        };

        let default_workers: u32 = v.parse("CONSUMER_DEFAULT_WORKERS", 3)?;
        let max_workers: u32 = v.parse("CONSUMER_MAX_WORKERS", 10)?;
        if max_workers == 0 {
            return Err(v.error("CONSUMER_MAX_WORKERS", "must be at least 1"));
        }
        if default_workers == 0 || default_workers > max_workers {
            return Err(v.error(
                "CONSUMER_DEFAULT_WORKERS",
                &format!("must be within 1..={max_workers} (CONSUMER_MAX_WORKERS)"),
            ));
        }
        let retry_delay = v.period("CONSUMER_RETRY_DELAY", "5s")?;
        let processing_timeout = v.duration("CONSUMER_PROCESSING_TIMEOUT", "30s")?;
        let function_timeout = v.duration("CONSUMER_FUNCTION_TIMEOUT", "900s")?;
        if function_timeout > MAX_FUNCTION_TIMEOUT {
            return Err(v.error(
                "CONSUMER_FUNCTION_TIMEOUT",
                "must be at most 900s (Lambda's limit)",
            ));
        }
        if processing_timeout + SETTLE_MARGIN > function_timeout {
            return Err(v.error(
                "CONSUMER_FUNCTION_TIMEOUT",
                "must leave room for one message: at least CONSUMER_PROCESSING_TIMEOUT + 5s",
            ));
        }
        let channels_per_connection: usize = v.parse(
            "CONSUMER_CHANNELS_PER_CONNECTION",
            DEFAULT_CHANNELS_PER_CONNECTION,
        )?;
        if !(1..=BROKER_CHANNEL_MAX).contains(&channels_per_connection) {
            return Err(v.error(
                "CONSUMER_CHANNELS_PER_CONNECTION",
                "must be within 1..=2047 (RabbitMQ's default channel_max)",
            ));
        }
        let batch_size: usize = v.parse("CONSUMER_BATCH_SIZE", 10)?;
        if !(1..=10_000).contains(&batch_size) {
            return Err(v.error("CONSUMER_BATCH_SIZE", "must be within 1..=10000"));
        }
        {
            // The default workers must let a full batch finish inside the function timeout,
            // as every queue's configured workers must (ConsumerDefaults::min_workers).
            let min = min_workers(batch_size, processing_timeout, function_timeout);
            if default_workers < min {
                return Err(v.error(
                    "CONSUMER_DEFAULT_WORKERS",
                    &format!(
                        "must be at least {min}: a batch of CONSUMER_BATCH_SIZE messages of up \
                         to CONSUMER_PROCESSING_TIMEOUT each must finish within \
                         CONSUMER_FUNCTION_TIMEOUT"
                    ),
                ));
            }
        }

        let database_tls = DatabaseTls {
            mode: match v.string("DATABASE_SSLMODE", "disable").as_str() {
                "disable" => DbSslMode::Disable,
                "require" => DbSslMode::Require,
                "verify-full" => DbSslMode::VerifyFull,
                _ => {
                    return Err(v.error(
                        "DATABASE_SSLMODE",
                        "must be disable, require or verify-full",
                    ));
                }
            },
            root_cert: lookup("DATABASE_SSLROOTCERT")
                .filter(|s| !s.is_empty())
                .map(Into::into),
        };
        if database_tls.mode == DbSslMode::VerifyFull && database_tls.root_cert.is_none() {
            return Err(v.error("DATABASE_SSLROOTCERT", "verify-full needs a CA bundle"));
        }

        let (log_format, log_level) = logging(&v, in_lambda)?;
        let metrics_path = v.string("METRICS_PATH", "/metrics");
        if !metrics_path.starts_with('/') {
            return Err(v.error("METRICS_PATH", "must start with /"));
        }

        let max_body_bytes: usize = v.parse("MESSAGE_MAX_BODY_BYTES", 256 * 1024)?;
        let max_page_size: u32 = v.parse("API_MAX_PAGE_SIZE", 500)?;
        if max_page_size == 0 {
            return Err(v.error("API_MAX_PAGE_SIZE", "must be at least 1"));
        }
        let publish_rate: f64 = v.parse("TENANT_PUBLISH_RATE", 0.0)?;
        if !publish_rate.is_finite() || publish_rate < 0.0 {
            return Err(v.error("TENANT_PUBLISH_RATE", "must be 0 (unlimited) or more"));
        }
        let publish_burst: u32 = v.parse("TENANT_PUBLISH_BURST", 1000)?;
        if publish_burst == 0 {
            return Err(v.error("TENANT_PUBLISH_BURST", "must be at least 1"));
        }

        let response_excerpt_bytes: usize = v.parse("ATTEMPT_RESPONSE_EXCERPT_BYTES", 1024)?;
        if response_excerpt_bytes > MAX_RESPONSE_EXCERPT_BYTES {
            return Err(v.error("ATTEMPT_RESPONSE_EXCERPT_BYTES", "must be at most 65536"));
        }

        let retention = retention(&v)?;

        let list = |var: &str| -> Vec<String> {
            v.string(var, "")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let public_keys_pem = v.get("JWT_PUBLIC_KEYS");
        let jwks_url = v.get("JWT_JWKS_URL");
        let jwks = v.get("JWT_JWKS");
        let asymmetric = public_keys_pem.is_some() || jwks_url.is_some() || jwks.is_some();
        let jwt = JwtConfig {
            hs256_enabled: v.parse("JWT_HS256_ENABLED", !asymmetric)?,
            public_keys_pem,
            jwks_url,
            jwks,
            jwks_cache_ttl: v.duration("JWT_JWKS_CACHE_TTL", "10m")?,
            jwks_min_refresh: v.duration("JWT_JWKS_MIN_REFRESH", "30s")?,
            issuers: list("JWT_ISSUER"),
            audiences: list("JWT_AUDIENCE"),
            leeway: v.duration("JWT_LEEWAY", "30s")?,
            role_claim: v.string("JWT_ROLE_CLAIM", "role"),
            tenant_claim: v.string("JWT_TENANT_CLAIM", "tenant_id"),
        };
        let jwt_secret = v.string("JWT_SECRET", DEV_JWT_SECRET);
        if in_lambda && jwt.hs256_enabled && jwt_secret == DEV_JWT_SECRET {
            // The default is public: with it anyone could mint an admin token.
            return Err(v.error(
                "JWT_SECRET",
                "inside Lambda HS256 needs a secret of the deployment's own, not the public \
                 development default; set JWT_SECRET, or verify an identity provider's tokens \
                 only (JWT_JWKS_URL, JWT_JWKS or JWT_PUBLIC_KEYS, with JWT_HS256_ENABLED unset \
                 or false)",
            ));
        }

        let control_kind = match v.string("CONTROL_PLANE", "local").as_str() {
            "local" => ControlPlaneKind::Local,
            "aws" => ControlPlaneKind::Aws,
            _ => return Err(v.error("CONTROL_PLANE", "must be local or aws")),
        };
        let control_queue_url = v.get("CONTROL_QUEUE_URL");
        if control_kind == ControlPlaneKind::Aws && control_queue_url.is_none() {
            return Err(v.error("CONTROL_QUEUE_URL", "required when CONTROL_PLANE=aws"));
        }
        if v.get("DEFAULT_TENANT_CONCURRENCY").is_some() {
            // Refused rather than ignored: a deployment that still sets it expects every
            // tenant to reserve it, which no longer happens.
            return Err(v.error(
                "DEFAULT_TENANT_CONCURRENCY",
                "was removed: a tenant without a capacity of its own is pooled (shares the \
                 pooled consumer function, nothing reserved); give a tenant a capacity to \
                 reserve concurrency for it. Unset it",
            ));
        }
        let function_prefix = v.string("TENANT_FUNCTION_PREFIX", "msgsvc-tenant-");
        // Lambda names are at most 64 characters; a tenant id takes 36.
        if function_prefix.len() > 28 {
            return Err(v.error("TENANT_FUNCTION_PREFIX", "must be at most 28 characters"));
        }

        Ok(Config {
            control: ControlConfig {
                kind: control_kind,
                queue_url: control_queue_url,
                pooled_function: v.string(
                    "POOLED_CONSUMER_FUNCTION",
                    &v.string("TENANT_FUNCTION_TEMPLATE", "consumer"),
                ),
                function_template: v.string("TENANT_FUNCTION_TEMPLATE", "consumer"),
                function_prefix,
                mq_broker_arn: v.get("MQ_BROKER_ARN"),
                mq_secret_arn: v.get("MQ_SECRET_ARN"),
                account_concurrency: match v.get("LAMBDA_ACCOUNT_CONCURRENCY") {
                    None => None,
                    Some(_) => match v.parse::<u32>("LAMBDA_ACCOUNT_CONCURRENCY", 0)? {
                        0 => {
                            return Err(v.error("LAMBDA_ACCOUNT_CONCURRENCY", "must be at least 1"));
                        }
                        n => Some(n),
                    },
                },
                stack_reserved_concurrency: v.parse("STACK_RESERVED_CONCURRENCY", 0)?,
            },
            database_url,
            database_max_connections: v.parse("DATABASE_MAX_CONNECTIONS", 16)?,
            database_options: match lookup("DATABASE_OPTIONS") {
                None => Some(DEFAULT_DATABASE_OPTIONS.to_string()),
                Some(s) if s.trim().is_empty() => None,
                Some(s) => Some(s),
            },
            database_tls,
            rabbitmq_url: match v.get("RABBITMQ_URL") {
                Some(url) => url,
                None => rabbitmq_url_from_parts(&v)?,
            },
            rabbitmq_management_url: Some(v.string(
                "RABBITMQ_MANAGEMENT_URL",
                "http://guest:guest@127.0.0.1:15672",
            ))
            .filter(|u| u != "off"),
            broker_max_queues: match v.get("BROKER_MAX_QUEUES") {
                None => None,
                Some(_) => Some(v.parse("BROKER_MAX_QUEUES", 0u32)?),
            },
            consumer_metrics_port: v.parse("CONSUMER_METRICS_PORT", 8081)?,
            server_host: v.string("SERVER_HOST", "0.0.0.0"),
            server_port: v.parse("SERVER_PORT", 8080)?,
            jwt_secret,
            jwt,
            consumer: ConsumerDefaults {
                default_workers,
                max_workers,
                retry_attempts: v.parse("CONSUMER_RETRY_ATTEMPTS", 3)?,
                retry_delay,
                max_retry_delay: v.duration("CONSUMER_MAX_RETRY_DELAY", "15m")?,
                processing_timeout,
                function_timeout,
                batch_size,
                batch_window: v.duration("CONSUMER_BATCH_WINDOW", "50ms")?,
                config_poll_interval: v.period("CONSUMER_CONFIG_POLL_INTERVAL", "1s")?,
                invoke_endpoint: lookup("CONSUMER_INVOKE_ENDPOINT").filter(|s| !s.is_empty()),
                function_name: v.string("CONSUMER_FUNCTION_NAME", "consumer"),
                tenants: v
                    .string("CONSUMER_TENANTS", "")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse().map_err(|_| {
                            v.error("CONSUMER_TENANTS", "expected comma-separated tenant ids")
                        })
                    })
                    .collect::<Result<_, _>>()?,
                channels_per_connection,
            },
            limits: Limits {
                max_body_bytes,
                max_batch_items: v.parse("MESSAGE_MAX_BATCH_ITEMS", 1000)?,
                max_delay: v.duration("MESSAGE_MAX_DELAY", "7d")?,
                max_page_size,
                tenant: TenantLimitDefaults {
                    publish_rate,
                    publish_burst,
                    max_queues: v.parse("TENANT_MAX_QUEUES", 100)?,
                    max_message_bytes: v
                        .parse("TENANT_MAX_MESSAGE_BYTES", max_body_bytes as u32)?,
                    max_backlog: v.parse("TENANT_MAX_BACKLOG", 1_000_000)?,
                    cache_ttl: v.duration("TENANT_LIMITS_CACHE_TTL", "2s")?,
                },
            },
            relay: RelayConfig {
                enabled: v.parse("RELAY_ENABLED", true)?,
                interval: v.period("RELAY_INTERVAL", "5s")?,
                stale_after: v.duration("RELAY_STALE_AFTER", "10s")?,
                batch: v.parse("RELAY_BATCH", 500)?,
                publish_timeout: v.duration("RELAY_PUBLISH_TIMEOUT", "10s")?,
                lost_after: v.duration("RELAY_LOST_AFTER", "5m")?,
            },
            retention,
            webhook: WebhookConfig {
                timeout: v.duration("WEBHOOK_TIMEOUT", "10s")?,
                allow_private: v.parse("WEBHOOK_ALLOW_PRIVATE", false)?,
                allow_http: v.parse("WEBHOOK_ALLOW_HTTP", false)?,
                response_excerpt_bytes,
            },
            metrics_enabled: v.parse("METRICS_ENABLED", !in_lambda)?,
            metrics_path,
            metrics_require_auth: v.parse("METRICS_REQUIRE_AUTH", in_lambda)?,
            log_level,
            log_format,
            cors_allowed_origins: v
                .string("CORS_ALLOWED_ORIGINS", "*")
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        })
    }

    /// The URL of the maintenance database on the same server, used to create ours if missing.
    pub fn maintenance_database_url(&self) -> Option<String> {
        let (base, _db) = self.database_url.rsplit_once('/')?;
        Some(format!("{base}/postgres"))
    }

    pub fn database_name(&self) -> Option<&str> {
        let tail = self.database_url.rsplit_once('/')?.1;
        Some(tail.split('?').next().unwrap_or(tail))
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("database_options", &self.database_options)
            .field("database_tls", &self.database_tls)
            .field("rabbitmq_url", &redact_url(&self.rabbitmq_url))
            .field(
                "rabbitmq_management_url",
                &self.rabbitmq_management_url.as_deref().map(redact_url),
            )
            .field(
                "server",
                &format_args!("{}:{}", self.server_host, self.server_port),
            )
            .field("jwt_secret", &"[redacted]")
            .field(
                "jwt_jwks_url",
                &self.jwt.jwks_url.as_deref().map(redact_url),
            )
            .field("jwt_hs256_enabled", &self.jwt.hs256_enabled)
            .field("jwt_issuers", &self.jwt.issuers)
            .field("jwt_audiences", &self.jwt.audiences)
            .field("consumer", &self.consumer)
            .field("limits", &self.limits)
            .field("relay", &self.relay)
            .field("retention", &self.retention)
            .field("webhook", &self.webhook)
            .field("metrics_enabled", &self.metrics_enabled)
            .field("metrics_require_auth", &self.metrics_require_auth)
            .field("log_level", &self.log_level)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

/// `RABBITMQ_URL` from `RABBITMQ_HOST`, `_PORT`, `_USER`, `_PASSWORD` and `_VHOST` (the
/// configuration file's `rabbitmq` section), defaulting to the local broker.
fn rabbitmq_url_from_parts(v: &Vars<'_>) -> Result<String, ConfigError> {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let host = v.string("RABBITMQ_HOST", "127.0.0.1");
    let port: u16 = v.parse("RABBITMQ_PORT", 5672)?;
    let user = v.string("RABBITMQ_USER", "guest");
    let password = v.string("RABBITMQ_PASSWORD", "guest");
    let vhost = v.string("RABBITMQ_VHOST", "/");
    Ok(format!(
        "amqp://{}:{}@{host}:{port}/{}",
        enc(&user),
        enc(&password),
        enc(&vhost)
    ))
}

/// The URL with its password replaced.
pub fn redact_url(raw: &str) -> String {
    match reqwest::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "[unparseable url]".into(),
    }
}

/// The development secret. It is public: inside Lambda configuration refuses it while HS256 is
/// enabled; elsewhere the API warns at start-up when it is in use.
pub const DEV_JWT_SECRET: &str = "local-development-secret-change-me";

struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|s| !s.trim().is_empty())
    }

    fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_string())
    }

    fn parse<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError {
                var,
                value: raw,
                reason: e.to_string(),
            }),
        }
    }

    fn duration(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let raw = self.string(var, default);
        parse_duration(&raw).map_err(|reason| ConfigError {
            var,
            value: raw,
            reason,
        })
    }

    /// A duration that must not be zero: a period (`tokio::time::interval` panics on zero, and a
    /// polling loop would spin) or a delay.
    fn period(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let d = self.duration(var, default)?;
        if d.is_zero() {
            return Err(self.error(var, "must be greater than zero"));
        }
        Ok(d)
    }

    fn error(&self, var: &'static str, reason: &str) -> ConfigError {
        ConfigError {
            var,
            value: self.get(var).unwrap_or_default(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn lambdas_logging_configuration_wins_inside_lambda() {
        let lambda = [
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("JWT_SECRET", "a-deployment-secret"),
        ];
        let c = with(&lambda).unwrap();
        assert_eq!(
            (c.log_format, c.log_level.as_str()),
            (LogFormat::Json, "info")
        );

        let own = [
            lambda[0],
            lambda[1],
            ("LOG_FORMAT", "text"),
            ("LOG_LEVEL", "debug,lapin=warn"),
        ];
        let c = with(&own).unwrap();
        assert_eq!(
            (c.log_format, c.log_level.as_str()),
            (LogFormat::Text, "debug,lapin=warn")
        );

        let controls = [
            own[0],
            own[1],
            own[2],
            own[3],
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
        ];
        let c = with(&controls).unwrap();
        assert_eq!(
            (c.log_format, c.log_level.as_str()),
            (LogFormat::Json, "warn")
        );

        let fatal = [
            lambda[0],
            lambda[1],
            ("AWS_LAMBDA_LOG_LEVEL", "FATAL"),
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
        ];
        let c = with(&fatal).unwrap();
        assert_eq!(
            (c.log_format, c.log_level.as_str()),
            (LogFormat::Text, "error")
        );

        let bad = [lambda[0], lambda[1], ("AWS_LAMBDA_LOG_LEVEL", "VERBOSE")];
        assert_eq!(with(&bad).unwrap_err().var, "AWS_LAMBDA_LOG_LEVEL");

        // Outside Lambda the variables mean nothing.
        let outside = [
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "ERROR"),
        ];
        let c = with(&outside).unwrap();
        assert_eq!(
            (c.log_format, c.log_level.as_str()),
            (LogFormat::Text, "info")
        );
    }

    /// Inside Lambda HS256 needs a secret of the deployment's own: the development default
    /// is public, so it would let anyone mint an admin token.
    #[test]
    fn lambda_refuses_the_development_jwt_secret() {
        let lambda = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        for vars in [
            vec![lambda],
            vec![lambda, ("JWT_SECRET", "  ")],
            vec![lambda, ("JWT_SECRET", DEV_JWT_SECRET)],
            vec![
                lambda,
                ("JWT_JWKS_URL", "https://idp.example/jwks.json"),
                ("JWT_HS256_ENABLED", "true"),
            ],
        ] {
            let err = with(&vars).unwrap_err();
            assert_eq!(err.var, "JWT_SECRET", "{vars:?}: {err}");
        }
        for vars in [
            vec![lambda, ("JWT_SECRET", "a-deployment-secret")],
            // HS256 off: no secret is needed.
            vec![lambda, ("JWT_JWKS_URL", "https://idp.example/jwks.json")],
            vec![lambda, ("JWT_HS256_ENABLED", "false")],
            // Outside Lambda the development default stays (local use).
            vec![],
        ] {
            assert!(with(&vars).is_ok(), "{vars:?}");
        }
        let c = with(&[]).unwrap();
        assert_eq!(c.jwt_secret, DEV_JWT_SECRET);
    }

    /// These feed `tokio::time::interval` (which panics on zero) or a polling loop.
    #[test]
    fn periods_must_not_be_zero() {
        for var in ["RELAY_INTERVAL", "CONSUMER_CONFIG_POLL_INTERVAL"] {
            let err = with(&[(var, "0s")]).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            assert!(with(&[(var, "1ms")]).is_ok(), "{var}");
        }
        // Refused with the relay off too: zero is never a period.
        assert!(with(&[("RELAY_INTERVAL", "0ms"), ("RELAY_ENABLED", "false")]).is_err());
    }

    #[test]
    fn defaults_work_against_local_services() {
        let c = with(&[]).unwrap();
        assert_eq!(c.database_url, "postgres://postgres@127.0.0.1:5432/msgsvc");
        assert_eq!(c.server_port, 8080);
        assert_eq!(c.consumer.default_workers, 3);
        assert_eq!(c.consumer.max_workers, 10);
        assert_eq!(c.consumer.retry_attempts, 3);
        assert_eq!(c.consumer.retry_delay, Duration::from_secs(5));
        assert_eq!(c.limits.max_body_bytes, 262_144);
        assert_eq!(c.database_name(), Some("msgsvc"));
        assert_eq!(c.control.kind, ControlPlaneKind::Local);
        assert_eq!(c.control.account_concurrency, None);
        assert_eq!(c.control.pooled_function, "consumer");
        assert_eq!(c.control.stack_reserved_concurrency, 0);
        let err = with(&[("CONTROL_PLANE", "aws")]).unwrap_err();
        assert_eq!(err.var, "CONTROL_QUEUE_URL");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = with(&[
            ("JWT_SECRET", "top-secret-key"),
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/x"),
            ("RABBITMQ_URL", "amqp://user:rabbitpw@mq:5672/%2f"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["top-secret-key", "hunter2", "rabbitpw"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("db:5432"));
    }

    #[test]
    fn database_parts_build_the_url() {
        let c = with(&[
            ("DATABASE_HOST", "db"),
            ("DATABASE_USER", "app"),
            ("DATABASE_PASSWORD", "pw"),
            ("DATABASE_DBNAME", "x"),
        ])
        .unwrap();
        assert_eq!(c.database_url, "postgres://app:pw@db:5432/x");
        assert_eq!(
            c.maintenance_database_url().unwrap(),
            "postgres://app:pw@db:5432/postgres"
        );
    }

    #[test]
    fn database_options_default_to_generic_plans_and_empty_sends_none() {
        assert_eq!(
            with(&[]).unwrap().database_options.as_deref(),
            Some(DEFAULT_DATABASE_OPTIONS)
        );
        // What the template sets behind RDS Proxy.
        assert_eq!(
            with(&[("DATABASE_OPTIONS", "")]).unwrap().database_options,
            None
        );
        assert_eq!(
            with(&[("DATABASE_OPTIONS", "-c work_mem=8MB")])
                .unwrap()
                .database_options
                .as_deref(),
            Some("-c work_mem=8MB")
        );
    }

    #[test]
    fn public_keys_turn_hs256_off_unless_asked_for() {
        let c = with(&[]).unwrap();
        assert!(c.jwt.hs256_enabled && c.jwt.jwks_url.is_none());
        let c = with(&[
            ("JWT_JWKS_URL", "https://idp.example/jwks.json"),
            ("JWT_AUDIENCE", "a, b"),
        ])
        .unwrap();
        assert!(!c.jwt.hs256_enabled);
        assert_eq!(c.jwt.audiences, ["a", "b"]);
        let c = with(&[("JWT_JWKS", "{}"), ("JWT_HS256_ENABLED", "true")]).unwrap();
        assert!(c.jwt.hs256_enabled);
    }

    #[test]
    fn attempt_response_excerpt_bytes() {
        let bytes = |vars: &[(&str, &str)]| with(vars).unwrap().webhook.response_excerpt_bytes;
        assert_eq!(bytes(&[]), 1024);
        assert_eq!(bytes(&[("ATTEMPT_RESPONSE_EXCERPT_BYTES", "0")]), 0);
        assert_eq!(
            bytes(&[("ATTEMPT_RESPONSE_EXCERPT_BYTES", "65536")]),
            MAX_RESPONSE_EXCERPT_BYTES
        );
    }

    #[test]
    fn retention_defaults() {
        let r = with(&[]).unwrap().retention;
        assert_eq!((r.completed_days, r.dead_lettered_days), (7, 30));
        assert_eq!((r.batch, r.max_batches), (1000, 10));
        let r = with(&[
            ("RETENTION_COMPLETED_DAYS", "0"),
            ("RETENTION_DEAD_LETTERED_DAYS", "90"),
            ("RETENTION_BATCH", "50"),
        ])
        .unwrap()
        .retention;
        assert_eq!(
            (r.completed_days, r.dead_lettered_days, r.batch),
            (0, 90, 50)
        );
    }

    #[test]
    fn tenant_limit_defaults() {
        let c = with(&[("MESSAGE_MAX_BODY_BYTES", "1000")]).unwrap();
        let t = &c.limits.tenant;
        assert_eq!(t.publish_rate, 0.0);
        assert_eq!(t.max_message_bytes, 1000);
        assert_eq!(t.max_queues, 100);
        let c = with(&[("TENANT_PUBLISH_RATE", "2.5"), ("TENANT_MAX_BACKLOG", "0")]).unwrap();
        assert_eq!(c.limits.tenant.publish_rate, 2.5);
        assert_eq!(c.limits.tenant.max_backlog, 0);
    }

    #[test]
    fn a_full_batch_must_fit_the_function_timeout() {
        let c = with(&[]).unwrap();
        // 10 messages of up to 30 s fit 900 s one at a time.
        assert_eq!(c.consumer.function_timeout, Duration::from_secs(900));
        assert_eq!(c.consumer.min_workers(), 1);
        // In 300 s less the 5 s margin, 9 rounds: 2 workers.
        let c = with(&[("CONSUMER_FUNCTION_TIMEOUT", "300s")]).unwrap();
        assert_eq!(c.consumer.min_workers(), 2);
        let c = with(&[("CONSUMER_FUNCTION_TIMEOUT", "35s")]).unwrap_err();
        assert_eq!(c.var, "CONSUMER_DEFAULT_WORKERS", "3 workers need 4 rounds");
        let c = with(&[
            ("CONSUMER_FUNCTION_TIMEOUT", "35s"),
            ("CONSUMER_DEFAULT_WORKERS", "10"),
        ])
        .unwrap();
        assert_eq!(c.consumer.min_workers(), 10);
        for (var, value) in [
            ("CONSUMER_FUNCTION_TIMEOUT", "901s"),
            ("CONSUMER_FUNCTION_TIMEOUT", "34s"),
        ] {
            assert_eq!(with(&[(var, value)]).unwrap_err().var, var, "{value}");
        }
    }

    /// The window API accepts whole seconds 0..=300 (MaximumBatchingWindowInSeconds,
    /// https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html).
    #[test]
    fn the_mapping_window_is_whole_seconds_up_to_300() {
        let window = |w: &str| {
            let c = with(&[("CONSUMER_BATCH_WINDOW", w), ("CONSUMER_BATCH_SIZE", "7")]).unwrap();
            let b = c.consumer.mapping_batching();
            assert_eq!(b.batch_size, 7);
            (b.window_seconds, b.window())
        };
        assert_eq!(window("50ms"), (0, Duration::ZERO));
        assert_eq!(window("1900ms"), (1, Duration::from_secs(1)));
        assert_eq!(window("2s"), (2, Duration::from_secs(2)));
        assert_eq!(window("10m"), (300, Duration::from_secs(300)));
    }

    /// Inside Lambda metrics reach CloudWatch as EMF, so `/metrics` is off unless enabled, and
    /// then needs an admin token unless told otherwise; outside it is on and open for scraping.
    #[test]
    fn metrics_route_defaults_depend_on_lambda() {
        let metrics = |vars: &[(&str, &str)]| {
            let c = with(vars).unwrap();
            (c.metrics_enabled, c.metrics_require_auth)
        };
        let lambda = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        // Inside Lambda, HS256 needs a secret of the deployment's own.
        let secret = ("JWT_SECRET", "a-deployment-secret");
        assert_eq!(metrics(&[]), (true, false));
        assert_eq!(metrics(&[lambda, secret]), (false, true));
        assert_eq!(
            metrics(&[lambda, secret, ("METRICS_ENABLED", "true")]),
            (true, true)
        );
        let open = [
            lambda,
            secret,
            ("METRICS_ENABLED", "true"),
            ("METRICS_REQUIRE_AUTH", "false"),
        ];
        assert_eq!(metrics(&open), (true, false));
        assert_eq!(metrics(&[("METRICS_REQUIRE_AUTH", "true")]), (true, true));
    }

    #[test]
    fn consumer_channels_per_connection_defaults_well_below_channel_max() {
        assert_eq!(
            with(&[("CONSUMER_CHANNELS_PER_CONNECTION", "3")])
                .unwrap()
                .consumer
                .channels_per_connection,
            3
        );
        assert_eq!(
            with(&[]).unwrap().consumer.channels_per_connection,
            DEFAULT_CHANNELS_PER_CONNECTION
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("SERVER_PORT", "eighty"),
            ("CONSUMER_RETRY_DELAY", "soon"),
            ("CONSUMER_DEFAULT_WORKERS", "11"),
            ("CONSUMER_MAX_WORKERS", "0"),
            ("METRICS_ENABLED", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("CONSUMER_RETRY_DELAY", "0s"),
            ("DATABASE_SSLMODE", "sometimes"),
            ("TENANT_PUBLISH_RATE", "-1"),
            ("TENANT_PUBLISH_BURST", "0"),
            ("API_MAX_PAGE_SIZE", "0"),
            ("JWT_LEEWAY", "soon"),
            ("CONTROL_PLANE", "cloud"),
            ("DEFAULT_TENANT_CONCURRENCY", "2"),
            ("LAMBDA_ACCOUNT_CONCURRENCY", "0"),
            ("STACK_RESERVED_CONCURRENCY", "-1"),
            ("METRICS_REQUIRE_AUTH", "sometimes"),
            ("CONSUMER_CHANNELS_PER_CONNECTION", "0"),
            ("CONSUMER_CHANNELS_PER_CONNECTION", "2048"),
            ("ATTEMPT_RESPONSE_EXCERPT_BYTES", "-1"),
            ("ATTEMPT_RESPONSE_EXCERPT_BYTES", "65537"),
            ("RETENTION_COMPLETED_DAYS", "3651"),
            ("RETENTION_DEAD_LETTERED_DAYS", "-1"),
            ("RETENTION_BATCH", "0"),
            ("RETENTION_MAX_BATCHES", "0"),
        ] {
            let err = with(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            assert!(err.to_string().contains(var));
        }
        let err = with(&[("DATABASE_SSLMODE", "verify-full")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_SSLROOTCERT", "{err}");
    }
}
