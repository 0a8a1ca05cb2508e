//! The API binary in Lambda mode, driven by the stand-in Runtime API (shared::testkit): what
//! API Gateway (HTTP API, payload 2.0) invokes it with, it answers as a Lambda proxy response;
//! API Gateway's request id is the request's id; Lambda's shutdown closes its connections.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use shared::testkit::{Invocation, RuntimeApi, json_lines, shut_down, test_config};
use tokio::process::{Child, Command};

/// AWS's sample HTTP API event (payload format 2.0; ../shared/fixtures, copied into the
/// consumer's tests), aimed at `method path`.
fn apigw_event(method: &str, path: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../consumer/tests/fixtures/apigw-v2-http-request.json"
    ))
    .expect("API Gateway v2 fixture");
    let mut event: Value = serde_json::from_str(&text).unwrap();
    event["rawPath"] = json!(path);
    event["routeKey"] = json!("$default");
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event
}

fn start_api(rt: &RuntimeApi, extra: &[(&str, &str)]) -> Child {
    let config = test_config();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_api"));
    cmd.envs(rt.lambda_env("api", Duration::from_secs(29)))
        .env("DATABASE_URL", &config.database_url)
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start api")
}

#[tokio::test]
async fn answers_an_api_gateway_event_for_health() {
    shared::testkit::prepare_database(&test_config()).await;
    let rt = RuntimeApi::start().await;
    let _api = start_api(&rt, &[]);

    let out = rt.invoke(apigw_event("GET", "/health")).await;

    let Invocation::Response(resp) = out else {
        panic!("expected a response, got {out:?}");
    };
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["database"], "ok");

    // One invocation at a time, as Lambda: the next one goes to the same process.
    let out = rt.invoke(apigw_event("GET", "/no-such-route")).await;
    let Invocation::Response(resp) = out else {
        panic!("expected a response, got {out:?}");
    };
    assert_eq!(resp["statusCode"], 404, "{resp}");
}

/// API Gateway's `requestContext.requestId` (payload format 2.0,
/// https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html)
/// is the request id in the logs and the `x-request-id` answered, over one the client sent.
#[tokio::test]
async fn the_gateway_request_id_is_the_request_id_and_shutdown_closes_connections() {
    shared::testkit::prepare_database(&test_config()).await;
    let rt = RuntimeApi::start().await;
    let mut api = start_api(
        &rt,
        &[("AWS_LAMBDA_LOG_FORMAT", "JSON"), ("LOG_FORMAT", "text")],
    );
    let gateway_id = format!("Gw{}=", uuid::Uuid::new_v4().simple());
    let mut event = apigw_event("GET", "/health");
    event["requestContext"]["requestId"] = json!(gateway_id);
    event["headers"]["x-request-id"] = json!("chosen-by-the-client");

    let out = rt.invoke(event).await;
    let Invocation::Response(resp) = out else {
        panic!("expected a response, got {out:?}");
    };
    assert_eq!(
        resp["headers"]["x-request-id"],
        gateway_id.as_str(),
        "{resp}"
    );
    let lambda_id = rt.request_ids()[0].clone();

    // Lambda's shutdown: the process closes its connections and exits 0.
    let status = shut_down(&rt, &mut api, Duration::from_secs(2)).await;
    assert!(status.success(), "exit status {status:?}");

    let lines = json_lines(&mut api).await;
    let out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let request_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == gateway_id.as_str())
        .collect();
    assert!(
        request_lines
            .iter()
            .any(|l| l["span"]["path"] == "/health" && l["status"] == 200),
        "the request's lines carry API Gateway's id: {out}"
    );
    for line in &request_lines {
        assert_eq!(line["span"]["requestId"], lambda_id.as_str(), "{line}");
    }
    assert!(!out.contains("chosen-by-the-client"), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "closed the broker and database connections"),
        "{out}"
    );
}
