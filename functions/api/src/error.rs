//! The one place where errors become HTTP responses:
//! `{"error": {"code": "<stable_snake_case>", "message": "<human text>"}}`, plus the figures
//! (`budget`) of a `concurrency_budget_exceeded`.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use shared::{Error, domain::ConcurrencyBudget, error::Code};
use utoipa::openapi::{ObjectBuilder, RefOr, Type, schema::Schema};

pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable; see the table in this schema's `code` description.
    #[schema(schema_with = error_code_schema)]
    pub code: &'static str,
    /// For humans; may change between versions.
    pub message: String,
    /// With `concurrency_budget_exceeded` only: the figures the capacity was checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<ConcurrencyBudget>,
}

/// Every error response has this shape.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The status comes with the code (`Code::status`), so the document and the answer agree.
pub fn status_of(err: &Error) -> StatusCode {
    StatusCode::from_u16(err.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The client-facing body. Internal errors are logged here and answered opaquely.
pub fn body_of(err: &Error) -> ErrorBody {
    let message = match err {
        Error::Internal(e) => {
            tracing::error!(error = ?e, "internal error");
            "internal error".to_string()
        }
        Error::Unavailable(dep) => format!("the {dep} is unavailable; try again shortly"),
        other => other.to_string(),
    };
    let budget = match err {
        Error::BudgetExceeded(b) => Some((**b).clone()),
        _ => None,
    };
    ErrorBody {
        code: err.code().as_str(),
        message,
        budget,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let mut resp = (
            status,
            Json(ErrorEnvelope {
                error: body_of(&self.0),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Error::LimitExceeded {
            retry_after_secs, ..
        } = &self.0
        {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after_secs),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Every stable error `code`, the status it comes with, and when: `shared::error::Code`, the
/// one table the API answers from.
pub fn error_codes() -> impl Iterator<Item = (&'static str, u16, &'static str)> {
    Code::ALL
        .iter()
        .map(|c| (c.as_str(), c.status(), c.description()))
}

/// The schema of `ErrorBody.code`: the enum of stable codes, described one by one.
fn error_code_schema() -> impl Into<RefOr<Schema>> {
    let table: Vec<String> = error_codes()
        .map(|(code, status, when)| format!("- `{code}` ({status}): {when}"))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(error_codes().map(|(code, _, _)| code)))
        .description(Some(format!("Stable error codes:\n{}", table.join("\n"))))
}
