//! The OpenAPI document: the handlers' annotations (utoipa), each route's contract as
//! [`crate::contract`] declared it when the route was registered, and the shared error
//! responses from the error-code table ([`crate::error::error_codes`]). Served at
//! `GET /api/v1/openapi.json` and committed as `docs/openapi.json`; a test fails when the
//! committed file drifts (`UPDATE_OPENAPI=1 cargo test -p api --lib openapi` or `make openapi`
//! rewrites it).

use std::{collections::BTreeSet, sync::LazyLock};

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Content, ObjectBuilder, Ref, Response, ResponseBuilder, Type,
        header::HeaderBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    contract::{BEARER, response_name},
    error::{ErrorEnvelope, error_codes},
};

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
    paths(serve, crate::routes::observability::render),
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

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", operation_id = "openapi_json",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
pub async fn serve() -> Json<&'static serde_json::Value> {
    Json(document_json())
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

/// Adds the bearer scheme and one shared response per error status (from [`error_codes`]);
/// the routes point at them.
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
    }
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

    /// Every route but the public ones needs the bearer token and answers 401 and 403, and
    /// every error status a route names is a shared response the document defines; the code
    /// enum lists every code.
    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc = document_json();
        let public = ["/health", "/metrics", "/api/v1/openapi.json"];
        let defined = doc["components"]["responses"].as_object().unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let secured = op["security"].is_array();
                assert_eq!(secured, !public.contains(&path.as_str()), "{method} {path}");
                let responses = op["responses"].as_object().unwrap();
                if secured {
                    for status in ["401", "403", "500", "503"] {
                        assert!(responses.contains_key(status), "{method} {path}: {status}");
                    }
                }
                for (status, r) in responses {
                    if let Some(name) = r["$ref"].as_str() {
                        let name = name.trim_start_matches("#/components/responses/");
                        assert!(defined.contains_key(name), "{method} {path}: {status}");
                    }
                }
            }
        }
        let codes = &doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"];
        assert_eq!(
            codes.as_array().unwrap().len(),
            shared::error::Code::ALL.len()
        );
    }
}
