//! The OpenAPI document, generated from the handlers' annotations (utoipa) plus the two tables
//! below: the stable error codes and, per route, who may call it and which error statuses it
//! answers. Served at `GET /api/v1/openapi.json` and committed as `docs/openapi.json`; a test
//! fails when the committed file drifts (`UPDATE_OPENAPI=1 cargo test -p api --lib openapi`
//! or `make openapi` rewrites it).

use std::{collections::BTreeSet, sync::LazyLock};

use axum::http::StatusCode;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Content, HttpMethod, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type,
        header::HeaderBuilder,
        path::Operation,
        schema::SchemaType,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    },
};

use crate::error::ErrorEnvelope;

/// Every stable error `code`, the status it comes with, and when.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_json",
        400,
        "the body is not JSON of the documented shape (unknown fields included)",
    ),
    (
        "unsupported_media_type",
        400,
        "the body was not sent as `application/json`",
    ),
    (
        "invalid_query",
        400,
        "a query parameter is malformed or unknown",
    ),
    ("invalid_path", 400, "a path parameter is malformed"),
    ("invalid_tenant_id", 400, "the tenant id is not a UUID"),
    ("invalid_message_id", 400, "a message id is not a UUID"),
    (
        "invalid_tenant_name",
        400,
        "the tenant name breaks its rules",
    ),
    ("invalid_queue_name", 400, "the queue name breaks its rules"),
    ("invalid_status", 400, "unknown message status"),
    ("invalid_limit", 400, "page size out of range"),
    (
        "invalid_cursor",
        400,
        "the cursor is not one this API returned",
    ),
    (
        "invalid_message_body",
        400,
        "message_body is missing or null",
    ),
    ("invalid_headers", 400, "message headers break their rules"),
    (
        "invalid_idempotency_key",
        400,
        "the idempotency key breaks its rules",
    ),
    ("invalid_batch", 400, "a batch is empty or too large"),
    ("invalid_workers", 400, "workers out of range"),
    (
        "batch_exceeds_function_timeout",
        400,
        "with so few workers a full batch cannot finish within the consumer function timeout",
    ),
    ("invalid_retry_attempts", 400, "retry_attempts out of range"),
    ("invalid_retry_delay", 400, "retry_delay_ms out of range"),
    (
        "invalid_endpoint_url",
        400,
        "endpoint_url is not an absolute http(s) URL",
    ),
    (
        "unauthorized",
        401,
        "no bearer token, or it is malformed, expired or badly signed",
    ),
    (
        "forbidden",
        403,
        "the token's role or tenant does not reach this route",
    ),
    ("not_found", 404, "no such route"),
    ("tenant_not_found", 404, "no such tenant"),
    ("message_not_found", 404, "no such message of this tenant"),
    (
        "consumer_not_found",
        404,
        "no such consumer queue of this tenant",
    ),
    ("tenant_name_taken", 409, "another tenant has this name"),
    (
        "tenant_inactive",
        409,
        "the tenant is deactivated and accepts no messages",
    ),
    (
        "idempotency_key_reused",
        409,
        "the idempotency key was used for a different message",
    ),
    (
        "payload_too_large",
        413,
        "the request body is larger than the service accepts",
    ),
    (
        "message_too_large",
        413,
        "message_body is larger than MESSAGE_MAX_BODY_BYTES",
    ),
    ("invalid_limits", 400, "a tenant limit is out of range"),
    (
        "invalid_capacity",
        400,
        "reserved_concurrency is out of range (0 to 1000)",
    ),
    (
        "batch_exceeds_burst",
        400,
        "a batch holds more messages than the tenant's publish burst; split it",
    ),
    (
        "queue_limit_reached",
        409,
        "a new queue would exceed the tenant's max_queues",
    ),
    (
        "rate_limited",
        429,
        "the tenant's publish rate is exceeded; retry after `Retry-After`",
    ),
    (
        "backlog_limit_reached",
        429,
        "the tenant's stored backlog is at max_backlog; retry after `Retry-After`",
    ),
    (
        "internal_error",
        500,
        "a fault of the service (logged; no detail is answered)",
    ),
    (
        "database_unavailable",
        503,
        "PostgreSQL does not answer; retry after `Retry-After`",
    ),
    (
        "broker_unavailable",
        503,
        "RabbitMQ does not answer; retry after `Retry-After`",
    ),
];

/// Who may call a route.
#[derive(Clone, Copy)]
pub enum Access {
    Public,
    /// An admin token.
    Admin,
    /// An admin token, or a tenant token of the tenant in the path.
    Tenant,
}

use Access::{Admin, Public, Tenant};

/// Per route: who may call it and the error statuses it answers. The one place to change them;
/// a route missing here fails the document's generation (and so its test).
pub const ROUTES: &[(&str, &str, Access, &[u16])] = &[
    ("get", "/health", Public, &[]),
    ("get", "/metrics", Public, &[]),
    ("get", "/api/v1/openapi.json", Public, &[]),
    (
        "post",
        "/api/v1/tenants",
        Admin,
        &[400, 401, 403, 409, 413, 500, 503],
    ),
    ("get", "/api/v1/tenants", Admin, &[400, 401, 403, 500, 503]),
    (
        "get",
        "/api/v1/tenants/{tenant_id}",
        Tenant,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "delete",
        "/api/v1/tenants/{tenant_id}",
        Admin,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "put",
        "/api/v1/tenants/{tenant_id}/capacity",
        Admin,
        &[400, 401, 403, 404, 413, 500, 503],
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_id}/capacity",
        Tenant,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "put",
        "/api/v1/tenants/{tenant_id}/limits",
        Admin,
        &[400, 401, 403, 404, 413, 500, 503],
    ),
    (
        "post",
        "/api/v1/tenants/{tenant_id}/messages",
        Tenant,
        &[400, 401, 403, 404, 409, 413, 429, 500, 503],
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_id}/messages",
        Tenant,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/tenants/{tenant_id}/messages/batch",
        Tenant,
        &[400, 401, 403, 404, 409, 413, 429, 500, 503],
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_id}/messages/{message_id}",
        Tenant,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_id}/messages/{message_id}/attempts",
        Tenant,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_id}/dead-letters",
        Tenant,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "post",
        "/api/v1/tenants/{tenant_id}/dead-letters/redrive",
        Tenant,
        &[400, 401, 403, 404, 413, 500, 503],
    ),
    (
        "get",
        "/api/v1/tenants/{tenant_id}/consumers",
        Tenant,
        &[400, 401, 403, 404, 500, 503],
    ),
    (
        "put",
        "/api/v1/tenants/{tenant_id}/consumers/{queue_name}/config",
        Tenant,
        &[400, 401, 403, 404, 409, 413, 500, 503],
    ),
    (
        "get",
        "/api/v1/consumers/status",
        Admin,
        &[401, 403, 500, 503],
    ),
];

const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "msgsvc",
        description = "Multi-tenant messaging: tenants publish JSON messages to named queues; \
            the service stores, delivers (with retries and dead letters) and reports them.\n\n\
            Auth: `Authorization: Bearer <JWT>`. An `admin` token reaches every route; a \
            `tenant` token (claim `tenant_id`) reaches only its own tenant's routes. Each \
            operation says which it needs.\n\n\
            Errors: every error answers `{\"error\": {\"code\", \"message\"}}` with a stable \
            `code` (see the `ErrorBody` schema)."
    ),
    paths(crate::routes::observability::render),
    components(schemas(ErrorEnvelope)),
    modifiers(&Contract),
    tags(
        (name = "tenants", description = "Tenants (admin creates, lists and deactivates)"),
        (name = "messages", description = "Publishing and message status"),
        (name = "dead letters", description = "Messages that exhausted their retries"),
        (name = "consumers", description = "Per-queue consumer config and status"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
struct ApiDoc;

/// The whole document: the routes' paths merged into the base, then [`Contract`] applied.
pub fn document() -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::documented().into_openapi());
    Contract.modify(&mut doc);
    doc
}

/// The document as served (built once).
pub fn document_json() -> &'static serde_json::Value {
    static DOC: LazyLock<serde_json::Value> =
        LazyLock::new(|| serde_json::to_value(document()).expect("the document serialises"));
    &DOC
}

/// The committed form: pretty JSON with a trailing newline.
pub fn document_pretty() -> String {
    let mut s = serde_json::to_string_pretty(document_json()).expect("the document serialises");
    s.push('\n');
    s
}

/// The schema of `ErrorBody.code`: the enum of stable codes, described one by one.
pub fn error_code_schema() -> impl Into<RefOr<openapi::schema::Schema>> {
    let table: Vec<String> = ERROR_CODES
        .iter()
        .map(|(code, status, when)| format!("- `{code}` ({status}): {when}"))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ERROR_CODES.iter().map(|(code, _, _)| *code)))
        .description(Some(format!("Stable error codes:\n{}", table.join("\n"))))
}

/// A message body: any JSON value but `null`.
pub fn message_body_schema() -> impl Into<RefOr<openapi::schema::Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![
            Type::Object,
            Type::Array,
            Type::String,
            Type::Number,
            Type::Integer,
            Type::Boolean,
        ]))
        .description(Some(
            "Any JSON value except null, at most `MESSAGE_MAX_BODY_BYTES` (256 KiB by default) \
             serialised",
        ))
}

/// Message headers as the publish routes accept them (see `shared::domain::message`).
pub fn headers_schema() -> impl Into<RefOr<openapi::schema::Schema>> {
    use shared::domain::message::{MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN, MAX_HEADERS};
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_HEADER_VALUE_LEN))
        .pattern(Some("^[^\\u0000-\\u001f\\u007f-\\u009f]*$"));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[A-Za-z0-9._-]{{1,{MAX_HEADER_NAME_LEN}}}$")));
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::Object, Type::Null]))
        .max_properties(Some(MAX_HEADERS))
        .property_names(Some(name))
        .additional_properties(Some(value))
        .description(Some(
            "Passed to the consumer with the message. Names starting with `x-msg-` are reserved.",
        ))
}

/// Adds the bearer scheme, each route's security and error responses (from [`ROUTES`]), and
/// one shared response per error status (from [`ERROR_CODES`]).
struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT with claims `sub`, `role` (`admin` or `tenant`), `tenant_id` \
                         (tenant tokens) and `exp`",
                    ))
                    .build(),
            ),
        );
        let statuses: BTreeSet<u16> = ERROR_CODES.iter().map(|(_, s, _)| *s).collect();
        for status in statuses {
            components
                .responses
                .insert(response_name(status), error_response(status).into());
        }

        let methods = [
            ("get", HttpMethod::Get),
            ("post", HttpMethod::Post),
            ("put", HttpMethod::Put),
            ("delete", HttpMethod::Delete),
            ("patch", HttpMethod::Patch),
        ];
        for (path, item) in doc.paths.paths.iter_mut() {
            for (name, method) in &methods {
                let Some(op) = operation_mut(item, method) else {
                    continue;
                };
                let (_, _, access, errors) = ROUTES
                    .iter()
                    .find(|(m, p, _, _)| m == name && p == path)
                    .unwrap_or_else(|| panic!("{name} {path} has no entry in openapi::ROUTES"));
                apply(op, *access, errors);
            }
        }
    }
}

fn operation_mut<'a>(
    item: &'a mut openapi::PathItem,
    method: &HttpMethod,
) -> Option<&'a mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        _ => None,
    }
}

fn apply(op: &mut Operation, access: Access, errors: &[u16]) {
    let who = match access {
        Public => None,
        Admin => Some("**Auth:** admin token."),
        Tenant => Some("**Auth:** admin token, or a tenant token of `{tenant_id}`."),
    };
    if let Some(who) = who {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        op.description = Some(match op.description.take() {
            Some(d) if !d.is_empty() => format!("{d}\n\n{who}"),
            _ => who.to_string(),
        });
    }
    for status in errors {
        op.responses.responses.insert(
            status.to_string(),
            RefOr::Ref(Ref::from_response_name(response_name(*status))),
        );
    }
}

/// `400` -> `BadRequest`.
fn response_name(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect()
}

fn error_response(status: u16) -> Response {
    let codes: Vec<String> = ERROR_CODES
        .iter()
        .filter(|(_, s, _)| *s == status)
        .map(|(code, _, _)| format!("`{code}`"))
        .collect();
    let mut response = ResponseBuilder::new()
        .description(format!("Error; `code` is one of {}", codes.join(", ")))
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))),
        );
    match status {
        401 => {
            response = response.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer`"))
                    .build(),
            )
        }
        429 | 503 => {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            )
        }
        _ => {}
    }
    response.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

    /// The committed document is what the code generates. `UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn committed_document_is_current() {
        let generated = document_pretty();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(COMMITTED, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date; regenerate it with `make openapi`"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc = document_json();
        for (method, path, access, errors) in ROUTES {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} missing from the document");
            for status in *errors {
                assert!(
                    op["responses"][status.to_string()].is_object(),
                    "{method} {path}: {status}"
                );
            }
            assert_eq!(
                op["security"].is_array(),
                !matches!(access, Public),
                "{method} {path}"
            );
        }
        let codes = &doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"];
        assert_eq!(codes.as_array().unwrap().len(), ERROR_CODES.len());
    }

    /// Every code the service can answer is in the documented list: the literals passed as codes
    /// in the API and the domain layer are collected from the source.
    #[test]
    fn every_error_code_in_the_source_is_documented() {
        let roots = [
            concat!(env!("CARGO_MANIFEST_DIR"), "/src"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/src"),
        ];
        let mut found = BTreeSet::new();
        let mut stack: Vec<std::path::PathBuf> = roots.iter().map(Into::into).collect();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    collect_codes(&path, &std::fs::read_to_string(&path).unwrap(), &mut found);
                }
            }
        }
        let documented: BTreeSet<&str> = ERROR_CODES.iter().map(|(c, _, _)| *c).collect();
        assert!(found.len() > 10, "the scan found too few codes: {found:?}");
        let missing: Vec<_> = found
            .iter()
            .filter(|c| !documented.contains(c.as_str()))
            .collect();
        assert!(missing.is_empty(), "undocumented error codes: {missing:?}");
    }

    /// String literals passed as codes: after `invalid(`, `conflict(` and `code: `, any
    /// `"invalid_..."` literal (the id parsers' codes), and the arms of `Error::code`.
    fn collect_codes(file: &std::path::Path, src: &str, out: &mut BTreeSet<String>) {
        let literal = |s: &str| -> Option<String> {
            let rest = s.trim_start().strip_prefix('"')?;
            let code = &rest[..rest.find('"')?];
            let ok = !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            ok.then(|| code.to_string())
        };
        if file.ends_with("openapi.rs") {
            return; // the list itself
        }
        let mut scans = vec![(src, "invalid("), (src, "conflict("), (src, "code: ")];
        if file.ends_with("shared/src/error.rs") {
            let code_fn = &src[src.find("fn code(").expect("Error::code")..];
            scans.push((&code_fn[..code_fn.find("\n    }").unwrap()], "=> "));
        }
        for (text, marker) in scans {
            for (at, _) in text.match_indices(marker) {
                out.extend(literal(&text[at + marker.len()..]));
            }
        }
        for (at, _) in src.match_indices("\"invalid_") {
            out.extend(literal(&src[at..]));
        }
    }
}
