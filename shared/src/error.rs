//! The domain error type. The API maps it to HTTP in exactly one place (`api::error`).

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which dependency an `Unavailable` error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Broker,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::Database => "database",
            Dependency::Broker => "broker",
        })
    }
}

/// Declares [`Code`]: every stable error code, the HTTP status it comes with, and when.
macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:literal, $doc:literal;)*) => {
        /// A stable, machine-readable error code. The API answers it as `error.code`, the
        /// OpenAPI document lists every one (from [`Code::ALL`]), and its HTTP status is
        /// [`Code::status`]: one table, so the three cannot drift.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// The HTTP status the API answers with this code.
            pub fn status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)*
                }
            }

            /// When the code is answered (for the OpenAPI document).
            pub fn description(self) -> &'static str {
                match self {
                    $(Code::$variant => $doc,)*
                }
            }
        }
    };
}

error_codes! {
    InvalidJson = "invalid_json", 400, "the body is not JSON of the documented shape (unknown fields included)";
    UnsupportedMediaType = "unsupported_media_type", 400, "the body was not sent as `application/json`";
    InvalidQuery = "invalid_query", 400, "a query parameter is malformed or unknown";
    InvalidPath = "invalid_path", 400, "a path parameter is malformed";
    InvalidTenantId = "invalid_tenant_id", 400, "the tenant id is not a UUID";
    InvalidMessageId = "invalid_message_id", 400, "a message id is not a UUID";
    InvalidTenantName = "invalid_tenant_name", 400, "the tenant name breaks its rules";
    InvalidQueueName = "invalid_queue_name", 400, "the queue name breaks its rules";
    InvalidStatus = "invalid_status", 400, "unknown message status";
    InvalidLimit = "invalid_limit", 400, "page size out of range";
    InvalidCursor = "invalid_cursor", 400, "the cursor is not one this API returned";
    InvalidMessageBody = "invalid_message_body", 400, "message_body is missing or null";
    InvalidHeaders = "invalid_headers", 400, "message headers break their rules";
    InvalidIdempotencyKey = "invalid_idempotency_key", 400, "the idempotency key breaks its rules";
    InvalidBatch = "invalid_batch", 400, "a batch is empty or too large";
    InvalidWorkers = "invalid_workers", 400, "workers out of range";
    BatchExceedsFunctionTimeout = "batch_exceeds_function_timeout", 400, "with so few workers a full batch cannot finish within the consumer function timeout";
    InvalidRetryAttempts = "invalid_retry_attempts", 400, "retry_attempts out of range";
    InvalidRetryDelay = "invalid_retry_delay", 400, "retry_delay_ms out of range";
    InvalidEndpointUrl = "invalid_endpoint_url", 400, "endpoint_url is not an absolute http(s) URL";
    InvalidReplay = "invalid_replay", 400, "a replay names neither ids nor a queue's time range, both, too many ids, an empty range, or a limit out of range";
    InvalidOnDeadLetter = "invalid_on_dead_letter", 400, "on_dead_letter is neither `continue` nor `block`";
    InvalidOrderingKey = "invalid_ordering_key", 400, "the ordering key breaks its rules (1-128 visible ASCII characters)";
    InvalidDeliveryTime = "invalid_delivery_time", 400, "deliver_after or deliver_at is malformed, both are given, or the time is beyond MESSAGE_MAX_DELAY";
    InvalidBroker = "invalid_broker", 400, "a broker's id, URL or settings break their rules (no credentials in URLs)";
    Unauthorized = "unauthorized", 401, "no bearer token, or it is malformed, expired or badly signed";
    Forbidden = "forbidden", 403, "the token's role or tenant does not reach this route";
    NotFound = "not_found", 404, "no such route or resource";
    TenantNotFound = "tenant_not_found", 404, "no such tenant";
    MessageNotFound = "message_not_found", 404, "no such message of this tenant";
    ConsumerNotFound = "consumer_not_found", 404, "no such consumer queue of this tenant";
    BrokerNotFound = "broker_not_found", 404, "no such broker in the registry";
    BrokerConfigured = "broker_configured", 409, "the default broker's URLs and ARNs are the deployment's configuration; only its max_queues and accepting change through the API";
    BrokerExists = "broker_exists", 409, "a broker with this id is registered already";
    BrokerBudgetExceeded = "broker_budget_exceeded", 409, "the tenant's broker (or every accepting broker, for a new tenant) holds its max_queues of tenant queues";
    TenantNameTaken = "tenant_name_taken", 409, "another tenant has this name";
    TenantInactive = "tenant_inactive", 409, "the tenant is deactivated and accepts no messages";
    IdempotencyKeyReused = "idempotency_key_reused", 409, "the idempotency key was used for a different message";
    MessageNotScheduled = "message_not_scheduled", 409, "only a scheduled message can be cancelled; this one is no longer scheduled";
    PayloadTooLarge = "payload_too_large", 413, "the request body is larger than the service accepts";
    MessageTooLarge = "message_too_large", 413, "message_body is larger than MESSAGE_MAX_BODY_BYTES";
    InvalidLimits = "invalid_limits", 400, "a tenant limit is out of range";
    InvalidRetention = "invalid_retention", 400, "a tenant's retention is out of range (0 to 3650 days)";
    InvalidCapacity = "invalid_capacity", 400, "reserved_concurrency is out of range (0 to 1000)";
    BatchExceedsBurst = "batch_exceeds_burst", 400, "a batch holds more messages than the tenant's publish burst; split it";
    ConcurrencyBudgetExceeded = "concurrency_budget_exceeded", 409, "the capacity would leave the account less than the 100 unreserved concurrency AWS requires; the error's `budget` holds the figures";
    QueueLimitReached = "queue_limit_reached", 409, "a new queue would exceed the tenant's max_queues";
    RateLimited = "rate_limited", 429, "the tenant's publish rate is exceeded; retry after `Retry-After`";
    BacklogLimitReached = "backlog_limit_reached", 429, "the tenant's stored backlog is at max_backlog; retry after `Retry-After`";
    InternalError = "internal_error", 500, "a fault of the service (logged; no detail is answered)";
    DatabaseUnavailable = "database_unavailable", 503, "PostgreSQL does not answer; retry after `Retry-After`";
    BrokerUnavailable = "broker_unavailable", 503, "RabbitMQ does not answer; retry after `Retry-After`";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Code> for &str {
    fn eq(&self, other: &Code) -> bool {
        *self == other.as_str()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a documented rule. `code` is stable and machine-readable.
    #[error("{message}")]
    Invalid { code: Code, message: String },
    /// The code says what was not found.
    #[error("{}", .0.description())]
    NotFound(Code),
    #[error("{message}")]
    Conflict { code: Code, message: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    TooLarge { code: Code, message: String },
    /// Over a per-tenant limit that frees up with time: 429 with `Retry-After`.
    #[error("{message}")]
    LimitExceeded {
        code: Code,
        message: String,
        retry_after_secs: u64,
    },
    /// A capacity over the account's concurrency budget: 409 with the figures.
    #[error(
        "a capacity of {} would leave the account less than {} unreserved concurrency: at most {} is available (account limit {}, reserved by other tenants {}, by the stack {})",
        .0.requested, .0.min_unreserved, .0.available, .0.account_limit, .0.reserved_by_tenants, .0.reserved_by_stack
    )]
    BudgetExceeded(Box<crate::domain::ConcurrencyBudget>),
    #[error("{0} unavailable")]
    Unavailable(Dependency),
    /// Anything else: logged in full, answered opaquely.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(code: Code, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A change to a deactivated tenant (publishing, configuring, redriving, its limits or
    /// capacity): its data can be read, not changed.
    pub fn tenant_inactive() -> Self {
        Self::conflict(
            Code::TenantInactive,
            "the tenant is deactivated: its data can be read, not changed",
        )
    }

    /// The same refusal of input, its message naming where in the request it was found
    /// (`messages[3]: ...`); other errors unchanged.
    pub fn at(self, place: &str) -> Self {
        match self {
            Error::Invalid { code, message } => Error::Invalid {
                code,
                message: format!("{place}: {message}"),
            },
            Error::TooLarge { code, message } => Error::TooLarge {
                code,
                message: format!("{place}: {message}"),
            },
            other => other,
        }
    }

    /// This error again, for each of several items it concerns (`Internal` keeps its text).
    pub fn same_again(&self) -> Self {
        match self {
            Error::Invalid { code, message } => Error::invalid(*code, message.clone()),
            Error::NotFound(code) => Error::NotFound(*code),
            Error::Conflict { code, message } => Error::conflict(*code, message.clone()),
            Error::Unauthenticated(m) => Error::Unauthenticated(m.clone()),
            Error::Forbidden(m) => Error::Forbidden(m.clone()),
            Error::TooLarge { code, message } => Error::TooLarge {
                code: *code,
                message: message.clone(),
            },
            Error::LimitExceeded {
                code,
                message,
                retry_after_secs,
            } => Error::LimitExceeded {
                code: *code,
                message: message.clone(),
                retry_after_secs: *retry_after_secs,
            },
            Error::BudgetExceeded(b) => Error::BudgetExceeded(b.clone()),
            Error::Unavailable(d) => Error::Unavailable(*d),
            Error::Internal(e) => Error::Internal(anyhow::anyhow!("{e:#}")),
        }
    }

    pub fn conflict(code: Code, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The stable machine code clients match on.
    pub fn code(&self) -> Code {
        match self {
            Error::Invalid { code, .. } | Error::Conflict { code, .. } => *code,
            Error::TooLarge { code, .. } | Error::LimitExceeded { code, .. } => *code,
            Error::NotFound(code) => *code,
            Error::Unauthenticated(_) => Code::Unauthorized,
            Error::Forbidden(_) => Code::Forbidden,
            Error::BudgetExceeded(_) => Code::ConcurrencyBudgetExceeded,
            Error::Unavailable(Dependency::Database) => Code::DatabaseUnavailable,
            Error::Unavailable(Dependency::Broker) => Code::BrokerUnavailable,
            Error::Internal(_) => Code::InternalError,
        }
    }

    /// True for faults of the infrastructure (not of the input): the consumer fails its batch
    /// on these so that the broker redelivers it.
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Internal(_))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        let io_failure = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
        // SQLSTATE class 08 is "connection exception", 57P0x "the server is shutting down".
        let lost = err
            .code()
            .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"));
        if err.is_closed() || io_failure || lost {
            tracing::warn!(error = %err, "database connection failed");
            return Error::Unavailable(Dependency::Database);
        }
        Error::Internal(anyhow::Error::new(err).context("database query failed"))
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => {
                tracing::warn!(error = %other, "database pool could not give a connection");
                Error::Unavailable(Dependency::Database)
            }
        }
    }
}
