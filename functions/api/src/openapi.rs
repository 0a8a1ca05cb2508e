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

use shared::error::Code;

use crate::error::ErrorEnvelope;

/// Every stable error `code`, the status it comes with, and when: `shared::error::Code`, the
/// one table the API answers from.
pub fn error_codes() -> impl Iterator<Item = (&'static str, u16, &'static str)> {
    Code::ALL
        .iter()
        .map(|c| (c.as_str(), c.status(), c.description()))
}

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
    let table: Vec<String> = error_codes()
        .map(|(code, status, when)| format!("- `{code}` ({status}): {when}"))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(error_codes().map(|(code, _, _)| code)))
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
/// one shared response per error status (from [`error_codes`]).
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
        let statuses: BTreeSet<u16> = error_codes().map(|(_, s, _)| s).collect();
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
    let codes: Vec<String> = error_codes()
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
        assert_eq!(codes.as_array().unwrap().len(), Code::ALL.len());
    }
}
