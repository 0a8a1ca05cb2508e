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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a documented rule. `code` is stable and machine-readable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    TooLarge { code: &'static str, message: String },
    /// Over a per-tenant limit that frees up with time: 429 with `Retry-After`.
    #[error("{message}")]
    LimitExceeded {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    #[error("{0} unavailable")]
    Unavailable(Dependency),
    /// Anything else: logged in full, answered opaquely.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            message: message.into(),
        }
    }

    /// Publishing to (or consuming for) a deactivated tenant.
    pub fn tenant_inactive() -> Self {
        Self::conflict(
            "tenant_inactive",
            "the tenant is deactivated and accepts no messages",
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The stable machine code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid { code, .. } | Error::Conflict { code, .. } => code,
            Error::TooLarge { code, .. } | Error::LimitExceeded { code, .. } => code,
            Error::NotFound("tenant") => "tenant_not_found",
            Error::NotFound("message") => "message_not_found",
            Error::NotFound("consumer") => "consumer_not_found",
            Error::NotFound(_) => "not_found",
            Error::Unauthenticated(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::Unavailable(Dependency::Database) => "database_unavailable",
            Error::Unavailable(Dependency::Broker) => "broker_unavailable",
            Error::Internal(_) => "internal_error",
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
