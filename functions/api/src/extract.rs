//! Extractors that turn bad requests into our error shape instead of axum's plain text. Who
//! may call is decided by the scope extractors in [`crate::scope`].

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;
use shared::Error;
use shared::error::Code;

use crate::error::ApiError;

/// A JSON object body; malformed JSON, wrong types, unknown fields and any other top-level
/// value are 400 `invalid_json`, an oversized body 413 `payload_too_large`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(v)) => v,
            Err(rejection) => return Err(ApiError(json_error(rejection))),
        };
        // serde would read a struct from an array of its fields in order (`[null]`), which no
        // client means; only an object is a request body here.
        from_json_object(value).map(JsonBody).map_err(ApiError)
    }
}

/// Reads a JSON object into `T`; any other value, or an object of the wrong shape, is
/// `invalid_json`.
pub fn from_json_object<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    if !value.is_object() {
        return Err(Error::invalid(Code::InvalidJson, "expected a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| Error::invalid(Code::InvalidJson, e.to_string()))
}

fn json_error(rejection: JsonRejection) -> Error {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Error::invalid(
            Code::UnsupportedMediaType,
            "send the body as JSON with 'Content-Type: application/json'",
        ),
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Error::TooLarge {
                code: Code::PayloadTooLarge,
                message: "the request body is larger than the service accepts".into(),
            }
        }
        other => Error::invalid(Code::InvalidJson, other.body_text()),
    }
}

/// Query parameters; bad ones are 400 `invalid_query`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryParams(v)),
            Err(r) => Err(ApiError(Error::invalid(Code::InvalidQuery, r.body_text()))),
        }
    }
}

/// Path parameters; a malformed id is 400 with the id's own code.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParams(v)),
            Err(r) => Err(ApiError(Error::invalid(Code::InvalidPath, r.body_text()))),
        }
    }
}
