//! The API binary in Lambda mode answering API Gateway HTTP API events (payload format 2.0) from
//! `tests/fixtures` (sources in its README), through the stand-in Runtime API
//! (`shared::testkit::RuntimeApi`). A fixture is re-addressed (route, method, body, token) here
//! in the test; the files stay as AWS wrote them.

use std::{process::Stdio, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use shared::{
    auth::{Authenticator, Claims},
    testkit::{Invocation, LAMBDA_JWT_SECRET, RuntimeApi, test_config},
};
use tokio::process::{Child, Command};

/// `GET /` without a body, as API Gateway sent it for a curl request.
const NO_BODY: &str = include_str!("../fixtures/apigw-v2-http-request.json");
/// The payload 2.0 structure from "Create AWS Lambda proxy integrations for HTTP APIs"
/// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html):
/// `POST /my/path` with a text body, cookies and a repeated query parameter.
const DOCS_SAMPLE: &str = include_str!("../fixtures/apigw-v2-docs-sample.json");

struct Api {
    rt: RuntimeApi,
    _child: Child,
    admin: String,
}

impl Api {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The binary in Lambda mode with `env` added to its environment.
    async fn start_with(env: &[(&str, &str)]) -> Self {
        let config = test_config();
        shared::testkit::prepare_database(&config).await;
        let rt = RuntimeApi::start().await;
        let child = Command::new(env!("CARGO_BIN_EXE_api"))
            .envs(rt.lambda_env("msgsvc-api", Duration::from_secs(29)))
            .env("DATABASE_URL", &config.database_url)
            .env("RABBITMQ_URL", &config.rabbitmq_url)
            .env("LOG_LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the api binary");
        let admin = Authenticator::hs256(LAMBDA_JWT_SECRET)
            .mint(&Claims::admin("apigw-test", 600))
            .unwrap();
        Self {
            rt,
            _child: child,
            admin,
        }
    }

    /// Invokes with `event`; returns the status and the JSON body of the proxy response.
    async fn call(&self, event: Value) -> (u16, Value) {
        let Invocation::Response(resp) = self.rt.invoke(event).await else {
            panic!("the invocation failed");
        };
        let status = resp["statusCode"].as_u64().expect("a proxy response") as u16;
        let body = resp["body"].as_str().unwrap_or("");
        let body = if resp["isBase64Encoded"] == true {
            String::from_utf8(STANDARD.decode(body).unwrap()).unwrap()
        } else {
            body.to_string()
        };
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

/// The fixture aimed at `method path?query`, as API Gateway fills `rawPath`, `rawQueryString`,
/// `queryStringParameters` and `requestContext.http` for it.
fn aimed(fixture: &str, method: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    event["rawQueryString"] = json!(raw.join("&"));
    if query.is_empty() {
        event
            .as_object_mut()
            .unwrap()
            .remove("queryStringParameters");
    } else {
        event["queryStringParameters"] = query
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
    }
    event
}

fn with_token(mut event: Value, token: &str) -> Value {
    event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    event
}

/// A JSON body as API Gateway passes one it encoded: base64 with `isBase64Encoded: true`.
fn with_base64_json(mut event: Value, body: &Value) -> Value {
    let text = body.to_string();
    event["headers"]["content-type"] = json!("application/json");
    event["headers"]["content-length"] = json!(text.len().to_string());
    event["body"] = json!(STANDARD.encode(text));
    event["isBase64Encoded"] = json!(true);
    event
}

#[tokio::test]
async fn api_gateway_v2_fixtures_reach_the_routes() {
    let api = Api::start().await;

    // As AWS wrote them: `GET /` and `POST /my/path` are no routes of ours.
    for fixture in [NO_BODY, DOCS_SAMPLE] {
        let (status, body) = api.call(serde_json::from_str(fixture).unwrap()).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }

    // Without a body.
    let (status, body) = api.call(aimed(NO_BODY, "GET", "/health", &[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");

    // A base64 body, with the sample's cookies and headers alongside: a tenant is created.
    let name = shared::testkit::unique("apigw");
    let event = aimed(DOCS_SAMPLE, "POST", "/api/v1/tenants", &[]);
    let event = with_base64_json(with_token(event, &api.admin), &json!({ "name": name }));
    assert!(event["cookies"].as_array().is_some_and(|c| !c.is_empty()));
    let (status, created) = api.call(event).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], name.as_str());
    let second = with_base64_json(
        with_token(
            aimed(DOCS_SAMPLE, "POST", "/api/v1/tenants", &[]),
            &api.admin,
        ),
        &json!({ "name": shared::testkit::unique("apigw") }),
    );
    assert_eq!(api.call(second).await.0, 201);

    // The query string reaches the handler: one tenant per page, and a next cursor.
    let list = with_token(
        aimed(DOCS_SAMPLE, "GET", "/api/v1/tenants", &[("limit", "1")]),
        &api.admin,
    );
    let mut list = list;
    list.as_object_mut().unwrap().remove("body");
    let (status, page) = api.call(list.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(page["next_cursor"].is_string(), "{page}");
    // ... and is read, not ignored: an out-of-range limit is refused.
    let mut bad = list;
    bad["rawQueryString"] = json!("limit=0");
    bad["queryStringParameters"] = json!({"limit": "0"});
    let (status, body) = api.call(bad).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_limit")),
        "{body}"
    );

    // Without a token the same route is refused, as through API Gateway.
    let (status, body) = api
        .call(aimed(NO_BODY, "GET", "/api/v1/tenants", &[]))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized")),
        "{body}"
    );
}

/// Inside Lambda metrics reach CloudWatch as EMF, so behind API Gateway `/metrics` is not
/// served (the standard 404), and where a deployment enables it, it needs an admin token.
#[tokio::test]
async fn metrics_are_not_served_in_lambda_unless_enabled_and_then_need_an_admin_token() {
    let api = Api::start().await;
    let (status, body) = api.call(aimed(NO_BODY, "GET", "/metrics", &[])).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let (status, body) = api
        .call(with_token(
            aimed(NO_BODY, "GET", "/metrics", &[]),
            &api.admin,
        ))
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));

    let enabled = Api::start_with(&[("METRICS_ENABLED", "true")]).await;
    let (status, body) = enabled.call(aimed(NO_BODY, "GET", "/metrics", &[])).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized")),
        "{body}"
    );
    let (status, body) = enabled
        .call(with_token(
            aimed(NO_BODY, "GET", "/metrics", &[]),
            &enabled.admin,
        ))
        .await;
    assert_eq!(status, 200, "{body}");
}
