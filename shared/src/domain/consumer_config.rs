//! A tenant queue's consumer configuration: how many workers, how retries behave, where
//! messages are delivered.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{OnDeadLetter, QueueName, TenantId, bounds::IntRange};
use crate::{
    config::ConsumerDefaults,
    error::{Code, Error},
};

/// How many of a batch's messages run at once: `0..=max_workers`, `0` pausing the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workers(u32);

impl Workers {
    pub fn parse(n: i64, max: u32) -> Result<Self, Error> {
        if (0..=i64::from(max)).contains(&n) {
            Ok(Self(n as u32))
        } else {
            Err(Error::invalid(
                Code::InvalidWorkers,
                format!("workers must be within 0..={max} (0 pauses the queue)"),
            ))
        }
    }

    pub fn get(&self) -> u32 {
        self.0
    }

    /// The values `ConsumerConfigUpdate::parse` takes with these defaults: 0 (paused), or from
    /// the fewest workers that finish a batch within the function timeout up to `max_workers`.
    #[cfg(feature = "openapi")]
    pub fn schema(defaults: &ConsumerDefaults) -> utoipa::openapi::Schema {
        use utoipa::openapi::{ObjectBuilder, OneOfBuilder, Type};
        let running = IntRange::new(
            i64::from(defaults.min_workers().max(1)),
            i64::from(defaults.max_workers),
        );
        let paused = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .enum_values(Some([0]));
        let description = format!(
            "0 pauses the queue; otherwise {}..={} (at least {} so a batch of {} finishes within \
             the consumer function's timeout)",
            running.min, running.max, running.min, defaults.batch_size
        );
        if running.min == 1 {
            let mut all = IntRange::new(0, running.max).schema();
            all.description = Some(description);
            return all.into();
        }
        OneOfBuilder::new()
            .item(paused)
            .item(running.schema())
            .description(Some(description))
            .build()
            .into()
    }
}

pub const RETRY_ATTEMPTS: IntRange = IntRange::new(0, 100);
pub const RETRY_DELAY_MS: IntRange = IntRange::new(10, 24 * 3_600_000);
pub const MAX_ENDPOINT_URL_LEN: usize = 2048;
/// What the document states of an endpoint beyond `format: uri`: an http(s) scheme (the parser
/// also needs a host).
pub const ENDPOINT_URL_PATTERN: &str = "^[hH][tT][tT][pP][sS]?://[^/?#]";

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerConfig {
    pub tenant_id: TenantId,
    pub queue_name: String,
    pub workers: u32,
    pub retry_attempts: u32,
    pub retry_delay_ms: u64,
    pub enabled: bool,
    pub endpoint_url: Option<String>,
    /// The Standard Webhooks secret (`whsec_...`) that signs deliveries to `endpoint_url`.
    pub signing_secret: String,
    /// What the later messages of an ordering key do once one is dead-lettered.
    pub on_dead_letter: OnDeadLetter,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ConsumerConfig {
    /// A new queue's config: the deployment's defaults (`CONSUMER_*`), enabled, no endpoint.
    /// The one statement of those defaults; storage and the consumer both take them from here.
    pub fn new_queue(
        tenant_id: TenantId,
        queue_name: &QueueName,
        defaults: &ConsumerDefaults,
        signing_secret: String,
    ) -> Self {
        let now = Utc::now();
        Self {
            tenant_id,
            queue_name: queue_name.to_string(),
            workers: defaults.default_workers,
            retry_attempts: defaults.retry_attempts,
            retry_delay_ms: defaults.retry_delay.as_millis() as u64,
            enabled: true,
            endpoint_url: None,
            signing_secret,
            on_dead_letter: OnDeadLetter::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Paused queues are not consumed.
    pub fn is_active(&self) -> bool {
        self.enabled && self.workers > 0
    }
}

/// A validated `PUT .../consumers/{queue}/config` request. Fields left out keep their stored
/// value (or the default, for a new queue).
#[derive(Clone, Debug)]
pub struct ConsumerConfigUpdate {
    pub queue_name: QueueName,
    pub workers: Workers,
    pub retry_attempts: Option<u32>,
    pub retry_delay_ms: Option<u64>,
    pub enabled: Option<bool>,
    /// `Some(None)` clears the endpoint.
    pub endpoint_url: Option<Option<String>>,
    /// Set after [`ConsumerConfigUpdate::parse`] (`OnDeadLetter::from_str`); `None` keeps it.
    pub on_dead_letter: Option<OnDeadLetter>,
}

impl ConsumerConfigUpdate {
    pub fn parse(
        queue_name: &str,
        workers: i64,
        retry_attempts: Option<i64>,
        retry_delay_ms: Option<i64>,
        enabled: Option<bool>,
        endpoint_url: Option<Option<String>>,
        defaults: &ConsumerDefaults,
    ) -> Result<Self, Error> {
        let queue_name = QueueName::parse(queue_name)?;
        let workers = Workers::parse(workers, defaults.max_workers)?;
        let min = defaults.min_workers();
        if workers.get() != 0 && workers.get() < min {
            return Err(Error::invalid(
                Code::BatchExceedsFunctionTimeout,
                format!(
                    "workers must be at least {min} (or 0 to pause): a batch of {} messages of up \
                     to {}s each, {} at a time, must finish within the consumer function's \
                     timeout of {}s",
                    defaults.batch_size,
                    defaults.processing_timeout.as_secs_f64(),
                    workers.get(),
                    defaults.function_timeout.as_secs_f64(),
                ),
            ));
        }
        let retry_attempts = retry_attempts
            .map(|n| {
                if RETRY_ATTEMPTS.contains(n) {
                    Ok(n as u32)
                } else {
                    Err(Error::invalid(
                        Code::InvalidRetryAttempts,
                        format!(
                            "retry_attempts must be within {}..={}",
                            RETRY_ATTEMPTS.min, RETRY_ATTEMPTS.max
                        ),
                    ))
                }
            })
            .transpose()?;
        let retry_delay_ms = retry_delay_ms
            .map(|n| {
                if RETRY_DELAY_MS.contains(n) {
                    Ok(n as u64)
                } else {
                    Err(Error::invalid(
                        Code::InvalidRetryDelay,
                        format!(
                            "retry_delay_ms must be within {}..={}",
                            RETRY_DELAY_MS.min, RETRY_DELAY_MS.max
                        ),
                    ))
                }
            })
            .transpose()?;
        let endpoint_url = endpoint_url
            .map(|url| url.map(|u| validate_endpoint_url(&u)).transpose())
            .transpose()?;
        Ok(Self {
            queue_name,
            workers,
            retry_attempts,
            retry_delay_ms,
            enabled,
            endpoint_url,
            on_dead_letter: None,
        })
    }
}

/// Syntax only; whether the host is allowed is decided at delivery time, when it is resolved.
fn validate_endpoint_url(raw: &str) -> Result<String, Error> {
    let invalid = || {
        Error::invalid(
            Code::InvalidEndpointUrl,
            format!(
                "endpoint_url must be an absolute http(s) URL of at most \
                 {MAX_ENDPOINT_URL_LEN} characters"
            ),
        )
    };
    let url = reqwest::Url::parse(raw).map_err(|_| invalid())?;
    if raw.chars().count() > MAX_ENDPOINT_URL_LEN
        || !matches!(url.scheme(), "https" | "http")
        || url.host().is_none()
    {
        return Err(invalid());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn workers_range() {
        assert!(Workers::parse(0, 10).is_ok());
        assert!(Workers::parse(10, 10).is_ok());
        assert_eq!(
            Workers::parse(11, 10).unwrap_err().code(),
            "invalid_workers"
        );
        assert_eq!(
            Workers::parse(-1, 10).unwrap_err().code(),
            "invalid_workers"
        );
    }

    #[test]
    fn update_rules() {
        let d = Config::from_lookup(|_| None).unwrap().consumer;
        let ok = ConsumerConfigUpdate::parse("q", 4, Some(2), Some(100), None, None, &d);
        assert!(ok.is_ok());
        let cases = [
            (
                ConsumerConfigUpdate::parse("q", 4, Some(101), None, None, None, &d),
                "invalid_retry_attempts",
            ),
            (
                ConsumerConfigUpdate::parse("q", 4, None, Some(1), None, None, &d),
                "invalid_retry_delay",
            ),
            (
                ConsumerConfigUpdate::parse(
                    "q",
                    4,
                    None,
                    None,
                    None,
                    Some(Some("ftp://x".into())),
                    &d,
                ),
                "invalid_endpoint_url",
            ),
            (
                ConsumerConfigUpdate::parse("Q!", 4, None, None, None, None, &d),
                "invalid_queue_name",
            ),
        ];
        for (result, code) in cases {
            assert_eq!(result.unwrap_err().code(), code);
        }
        // A batch of 10 at 30 s each needs 2 workers to fit a 300 s function timeout.
        let short = ConsumerDefaults {
            function_timeout: std::time::Duration::from_secs(300),
            ..d
        };
        let one = ConsumerConfigUpdate::parse("q", 1, None, None, None, None, &short);
        assert_eq!(one.unwrap_err().code(), "batch_exceeds_function_timeout");
        assert!(ConsumerConfigUpdate::parse("q", 0, None, None, None, None, &short).is_ok());
        assert!(ConsumerConfigUpdate::parse("q", 2, None, None, None, None, &short).is_ok());
    }
}
