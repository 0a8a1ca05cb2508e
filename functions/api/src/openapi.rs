//! The OpenAPI document: the handlers' annotations (utoipa), each route's contract as
//! [`crate::contract`] declared it when the route was registered, the shared error responses
//! from the error-code table ([`crate::error::error_codes`]) and the deployment's bounds
//! ([`crate::deployment`]). Served at `GET /api/v1/openapi.json` with the running
//! configuration's bounds, and committed as `docs/openapi.json` with the defaults; a test fails
//! when the committed file drifts (`UPDATE_OPENAPI=1 cargo test -p api --lib openapi` or
//! `make openapi` rewrites it).

use std::collections::BTreeSet;

use axum::{
    body::Bytes,
    extract::State,
    http::header::CONTENT_TYPE,
    response::{IntoResponse, Response as HttpResponse},
};
use shared::Config;
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
    deployment::Bounds,
    error::{ErrorEnvelope, error_codes},
    state::ApiState,
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
    // `/metrics` joins per deployment (`observability::documented`).
    paths(serve),
    // Schemas only parameters and hand-written schemas name (utoipa collects the rest).
    components(schemas(ErrorEnvelope, crate::routes::Cursor, crate::routes::JsonValue)),
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

/// The whole document for a deployment: the routes' paths merged into the base, then
/// [`Contract`] and the configuration's [`Bounds`] applied.
pub fn document(config: &Config) -> openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::routes::documented().into_openapi());
    if let Some(metrics) = crate::routes::observability::documented(config) {
        doc.merge(metrics);
    }
    Contract.modify(&mut doc);
    Bounds(config).modify(&mut doc);
    doc
}

pub fn document_json(config: &Config) -> serde_json::Value {
    serde_json::to_value(document(config)).expect("the document serialises")
}

/// This API's OpenAPI document, with the bounds of the configuration it runs with.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", operation_id = "openapi_json",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
pub async fn serve(State(s): State<ApiState>) -> HttpResponse {
    ([(CONTENT_TYPE, "application/json")], s.document.clone()).into_response()
}

/// The document as [`serve`] sends it (built once per process).
pub fn document_bytes(config: &Config) -> Bytes {
    Bytes::from(serde_json::to_vec(&document_json(config)).expect("the document serialises"))
}

/// The committed form: the default configuration's document, pretty, with a trailing newline.
pub fn document_pretty() -> String {
    let mut s =
        serde_json::to_string_pretty(&document_json(&defaults())).expect("the document serialises");
    s.push('\n');
    s
}

/// The configuration of a deployment that sets nothing.
pub fn defaults() -> Config {
    Config::from_lookup(|_| None).expect("the defaults are a valid configuration")
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

    /// Every `$ref` names a schema or response the document defines.
    #[test]
    fn every_reference_resolves() {
        fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        match (k.as_str(), v.as_str()) {
                            ("$ref", Some(r)) => out.push(r),
                            _ => refs(v, out),
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = document_json(&defaults());
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 10);
        for r in found {
            let path: Vec<&str> = r.trim_start_matches("#/").split('/').collect();
            let target = path.iter().fold(&doc, |node, key| &node[*key]);
            assert!(target.is_object(), "{r} is not defined");
        }
    }

    /// `/metrics` is documented as the deployment serves it: absent in Lambda by default, an
    /// admin route when `METRICS_REQUIRE_AUTH`, at `METRICS_PATH`.
    #[test]
    fn the_metrics_route_is_documented_as_the_deployment_serves_it() {
        let with = |vars: &'static [(&str, &str)]| {
            let config = Config::from_lookup(|k| {
                vars.iter()
                    .find(|(v, _)| *v == k)
                    .map(|(_, x)| x.to_string())
            })
            .unwrap();
            document_json(&config)
        };
        let lambda = with(&[
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("JWT_SECRET", "a-deployment-secret"),
        ]);
        assert!(lambda["paths"].get("/metrics").is_none());
        assert!(lambda["paths"]["/health"].is_object());

        let secured = with(&[("METRICS_REQUIRE_AUTH", "true")]);
        let op = &secured["paths"]["/metrics"]["get"];
        assert!(op["security"].is_array(), "{op}");
        for status in ["200", "401", "403"] {
            assert!(op["responses"][status].is_object(), "{status}: {op}");
        }
        assert_eq!(op["operationId"], "render");

        let moved = with(&[("METRICS_PATH", "/prometheus")]);
        assert!(moved["paths"].get("/metrics").is_none());
        assert!(moved["paths"]["/prometheus"]["get"]["security"].is_null());
    }

    /// Every route but the public ones needs the bearer token and answers 401 and 403, and
    /// every error status a route names is a shared response the document defines; the code
    /// enum lists every code.
    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc = &document_json(&defaults());
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
