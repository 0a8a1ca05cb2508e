//! Metrics as an operator sees them: scraped from the real API and consumer processes after
//! real traffic, and as CloudWatch EMF from a Lambda-mode invocation.

use std::{collections::HashMap, process::Stdio, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use serde_json::{Value, json};
use shared::{
    auth::{Authenticator, Claims},
    observability::metrics::{CATALOG, Kind, Process},
};
use tokio::{io::AsyncBufReadExt, sync::Mutex};

use system_tests::processes::{spawn, wait_http};

mod helpers;
use shared::testkit::free_port;

/// Prometheus text as `series -> value` (series include their labels).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sum(series: &HashMap<String, f64>, name: &str, must_contain: &[&str]) -> f64 {
    series
        .iter()
        .filter(|(s, _)| {
            (s.as_str() == name || s.starts_with(&format!("{name}{{")))
                && must_contain.iter().all(|m| s.contains(m))
        })
        .map(|(_, v)| v)
        .sum()
}

fn present(series: &HashMap<String, f64>, name: &str, kind: Kind) -> bool {
    let probe = if kind == Kind::Histogram {
        format!("{name}_count")
    } else {
        name.to_string()
    };
    series
        .keys()
        .any(|s| s == &probe || s.starts_with(&format!("{probe}{{")))
}

async fn failing_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(|| async { StatusCode::SERVICE_UNAVAILABLE }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn both_processes_export_every_documented_metric_after_real_traffic() {
    let config = crate::helpers::config();
    shared::testkit::prepare_database(&config).await;
    let db = config.database_url.clone();
    let (api_port, metrics_port) = (free_port(), free_port());
    let _api = spawn(
        "api",
        &db,
        &[
            ("SERVER_PORT", api_port.to_string()),
            ("RELAY_INTERVAL", "1s".into()),
            ("RELAY_STALE_AFTER", "1s".into()),
        ],
        Stdio::null(),
    );
    let api = format!("http://127.0.0.1:{api_port}");
    wait_http(&format!("{api}/health")).await;

    let http = reqwest::Client::new();
    let admin = Authenticator::hs256(&config.jwt_secret)
        .mint(&Claims::admin("test", 600))
        .unwrap();
    let call = |method: reqwest::Method, path: String, body: Value| {
        let req = http
            .request(method, format!("{api}{path}"))
            .bearer_auth(&admin)
            .json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let tenant = call(
        reqwest::Method::POST,
        "/api/v1/tenants".into(),
        json!({"name": shared::testkit::unique("obs")}),
    )
    .await;
    let tenant = tenant["id"].as_str().unwrap().to_string();
    let endpoint = failing_endpoint().await;
    call(
        reqwest::Method::PUT,
        format!("/api/v1/tenants/{tenant}/consumers/failing/config"),
        json!({"workers": 1, "retry_attempts": 1, "retry_delay_ms": 100, "endpoint_url": endpoint}),
    )
    .await;

    let _consumer = spawn(
        "consumer",
        &db,
        &[
            ("CONSUMER_TENANTS", tenant.clone()),
            ("CONSUMER_METRICS_PORT", metrics_port.to_string()),
            ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("WEBHOOK_ALLOW_HTTP", "true".into()),
        ],
        Stdio::null(),
    );
    let consumer = format!("http://127.0.0.1:{metrics_port}/metrics");
    wait_http(&consumer).await;

    let mut ids = Vec::new();
    for i in 0..5 {
        let r = call(
            reqwest::Method::POST,
            format!("/api/v1/tenants/{tenant}/messages"),
            json!({"queue_name": "obs", "message_body": i}),
        )
        .await;
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let doomed = call(
        reqwest::Method::POST,
        format!("/api/v1/tenants/{tenant}/messages"),
        json!({"queue_name": "failing", "message_body": "x"}),
    )
    .await;
    ids.push(doomed["id"].as_str().unwrap().to_string());
    for _ in 0..200 {
        let mut settled = 0;
        for id in &ids {
            let m = call(
                reqwest::Method::GET,
                format!("/api/v1/tenants/{tenant}/messages/{id}"),
                Value::Null,
            )
            .await;
            if matches!(m["status"].as_str(), Some("completed" | "dead_lettered")) {
                settled += 1;
            }
        }
        if settled == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The dead letter delivered again (the replay counter).
    let replayed = call(
        reqwest::Method::POST,
        format!("/api/v1/tenants/{tenant}/messages/replay"),
        json!({"message_ids": [doomed["id"]]}),
    )
    .await;
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    // Its endpoint still fails: it is dead-lettered again after its retry.
    let doomed_id = doomed["id"].as_str().unwrap();
    for _ in 0..200 {
        let m = call(
            reqwest::Method::GET,
            format!("/api/v1/tenants/{tenant}/messages/{doomed_id}"),
            Value::Null,
        )
        .await;
        if m["status"] == "dead_lettered" && m["attempts"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Gauges are sampled every 5 s; wait for a sample that saw the traffic.
    let tq = format!("tenant_id=\"{tenant}\"");
    let mut consumer_series = HashMap::new();
    for _ in 0..100 {
        consumer_series = parse(&reqwest::get(&consumer).await.unwrap().text().await.unwrap());
        if sum(
            &consumer_series,
            "msgsvc_queue_oldest_pending_age_seconds",
            &[&tq],
        ) == 0.0
            && consumer_series
                .keys()
                .any(|k| k.starts_with("msgsvc_queue_messages_ready{") && k.contains(&tq))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let api_series = parse(
        &reqwest::get(format!("{api}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );

    for m in CATALOG {
        for (process, series) in [
            (Process::Api, &api_series),
            (Process::Consumer, &consumer_series),
        ] {
            if m.exported_by.contains(&process) {
                assert!(
                    present(series, m.name, m.kind),
                    "{process:?} does not export {}",
                    m.name
                );
            }
        }
    }

    let obs = [tq.as_str(), "queue=\"obs\""];
    let failing = [tq.as_str(), "queue=\"failing\""];
    assert_eq!(
        sum(&api_series, "msgsvc_messages_published_total", &obs),
        5.0
    );
    assert_eq!(
        sum(&api_series, "msgsvc_messages_publish_deferred_total", &obs),
        0.0
    );
    assert!(
        sum(
            &api_series,
            "msgsvc_http_requests_total",
            &[
                "route=\"/api/v1/tenants/{tenant_id}/messages\"",
                "status=\"202\""
            ]
        ) >= 6.0
    );
    assert!(sum(&api_series, "msgsvc_relay_sweeps_total", &[]) >= 1.0);
    assert_eq!(
        sum(
            &api_series,
            "msgsvc_messages_replayed_total",
            &[failing[0], failing[1]]
        ),
        1.0
    );
    assert_eq!(sum(&api_series, "msgsvc_broker_connected", &[]), 1.0);
    assert_eq!(
        sum(&api_series, "msgsvc_db_pool_max_connections", &[]),
        16.0
    );

    assert_eq!(
        sum(
            &consumer_series,
            "msgsvc_messages_processed_total",
            &[obs[0], obs[1], "outcome=\"completed\""]
        ),
        5.0
    );
    assert_eq!(
        sum(
            &consumer_series,
            "msgsvc_messages_processed_total",
            &[failing[0], failing[1], "outcome=\"retried\""]
        ),
        2.0,
        "once before its replay, once after"
    );
    assert_eq!(
        sum(
            &consumer_series,
            "msgsvc_messages_processed_total",
            &[failing[0], failing[1], "outcome=\"dead_lettered\""]
        ),
        2.0,
        "once before its replay, once after"
    );
    assert_eq!(
        sum(
            &consumer_series,
            "msgsvc_processing_duration_seconds_count",
            &obs
        ),
        5.0
    );
    assert_eq!(
        sum(
            &consumer_series,
            "msgsvc_end_to_end_latency_seconds_count",
            &obs
        ),
        5.0
    );
    let e2e = sum(
        &consumer_series,
        "msgsvc_end_to_end_latency_seconds_sum",
        &obs,
    ) / 5.0;
    assert!(e2e > 0.0 && e2e < 30.0, "mean end-to-end latency {e2e} s");
    assert_eq!(
        sum(&consumer_series, "msgsvc_consumer_workers_desired", &obs),
        3.0
    );
    assert_eq!(
        sum(&consumer_series, "msgsvc_consumer_workers_busy", &obs),
        0.0
    );
    assert_eq!(
        sum(&consumer_series, "msgsvc_queue_messages_ready", &obs),
        0.0
    );
    assert_eq!(
        sum(
            &consumer_series,
            "msgsvc_queue_oldest_pending_age_seconds",
            &obs
        ),
        0.0
    );
    assert_eq!(sum(&consumer_series, "msgsvc_broker_connected", &[]), 1.0);

    // The status API reports the same traffic.
    let status = call(
        reqwest::Method::GET,
        format!("/api/v1/tenants/{tenant}/consumers"),
        Value::Null,
    )
    .await;
    let items = status["items"].as_array().unwrap();
    let q = |name: &str| {
        items
            .iter()
            .find(|i| i["queue_name"] == name)
            .unwrap()
            .clone()
    };
    let (obs_status, failing_status) = (q("obs"), q("failing"));
    assert_eq!(obs_status["recent"]["completed"], 5);
    assert_eq!(obs_status["applied"]["workers"], 3);
    assert_eq!(obs_status["applied"]["running"], true);
    assert_eq!(obs_status["busy_workers"], 0);
    assert!(obs_status["oldest_waiting_age_seconds"].is_null());
    assert!(obs_status["completed_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(failing_status["messages"]["dead_lettered"], 1);
    assert_eq!(failing_status["failure_rate"], 1.0);
    assert!(
        failing_status["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    assert_eq!(obs_status["broker"]["ready"], 0);
}

/// A stand-in for the Lambda Runtime API: hands out one event, records the response.
#[derive(Clone)]
struct RuntimeApi {
    event: Arc<Mutex<Option<Value>>>,
    response: Arc<Mutex<Option<Value>>>,
}

async fn next(State(rt): State<RuntimeApi>) -> (HeaderMap, String) {
    let event = rt.event.lock().await.take();
    let Some(event) = event else {
        // No more events: hold the runtime here, as Lambda does between invocations.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        "req-emf-1".parse().unwrap(),
    );
    let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:consumer-test"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".parse().unwrap(),
    );
    (headers, event.to_string())
}

async fn respond(State(rt): State<RuntimeApi>, body: String) -> StatusCode {
    *rt.response.lock().await = Some(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    StatusCode::ACCEPTED
}

#[tokio::test]
async fn a_lambda_invocation_writes_an_emf_document_to_stdout() {
    let ctx = crate::helpers::context().await;
    let t = crate::helpers::tenant(&ctx).await;
    let id = crate::helpers::publish(&ctx, t, "emf", json!({"n": 1})).await;
    let queue = shared::broker::QueueRef::new(t, shared::domain::QueueName::parse("emf").unwrap());
    let mut event: Value = serde_json::from_str(include_str!(
        "../../functions/consumer/tests/fixtures/aws-rmq-event.json"
    ))
    .unwrap();
    let mut messages = event["rmqMessagesByQueue"]["test::/"].take();
    messages[0]["basicProperties"]["messageId"] = json!(id.to_string());
    event["rmqMessagesByQueue"] =
        json!({ format!("{}::/", shared::broker::work_queue(&queue)): messages });

    let rt = RuntimeApi {
        event: Arc::new(Mutex::new(Some(event))),
        response: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime_addr = listener.local_addr().unwrap().to_string();
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(respond))
        .with_state(rt.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let lambda_env = [
        ("AWS_LAMBDA_FUNCTION_NAME", "consumer-test".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/consumer-test".into(),
        ),
        ("LOG_LEVEL", "info".into()),
    ];
    let mut cmd = tokio::process::Command::new(system_tests::bin("consumer"));
    cmd.env("DATABASE_URL", &ctx.config.database_url)
        .env("AWS_LAMBDA_RUNTIME_API", &runtime_addr)
        .env("JWT_SECRET", shared::testkit::LAMBDA_JWT_SECRET)
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &lambda_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();

    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // One invocation flushes one EMF document per dimension set; collect them all.
    let mut documents: Vec<Value> = Vec::new();
    let collect = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            match serde_json::from_str::<Value>(&line) {
                Ok(doc) if doc.get("_aws").is_some() => documents.push(doc),
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), collect).await;
    child.kill().await.ok();

    let response = rt
        .response
        .lock()
        .await
        .clone()
        .expect("the function answered");
    assert_eq!(response["queues"][0]["completed"], 1, "{response}");
    let emf = documents
        .iter()
        .find(|d| d.get("msgsvc_messages_processed_total").is_some())
        .unwrap_or_else(|| panic!("no EMF document with the processed count: {documents:?}"))
        .clone();
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "msgsvc");
    assert!(emf["_aws"]["Timestamp"].as_u64().unwrap() > 0);
    let names: Vec<&str> = documents
        .iter()
        .flat_map(|d| {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
        })
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    for expected in [
        "msgsvc_messages_processed_total",
        "msgsvc_processing_duration_seconds",
        "msgsvc_end_to_end_latency_seconds",
        "msgsvc_broker_connected",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let dims = directive["Dimensions"][0].as_array().unwrap();
    assert!(
        dims.contains(&json!("tenant_id")) && dims.contains(&json!("outcome")),
        "{dims:?}"
    );
    assert_eq!(emf["function"], "consumer-test");
    assert_eq!(emf["RequestId"], "req-emf-1");
    assert_eq!(emf["msgsvc_messages_processed_total"], 1);
    assert_eq!(emf["outcome"], "completed");
    assert_eq!(emf["tenant_id"], t.to_string());
    let m = crate::helpers::message(&ctx, t, id).await;
    assert_eq!(m.status, shared::domain::MessageStatus::Completed);
}

#[tokio::test]
async fn api_logs_are_json_lines_with_request_and_tenant_ids_and_never_the_token() {
    let config = crate::helpers::config();
    shared::testkit::prepare_database(&config).await;
    let port = free_port();
    let env = [
        ("SERVER_PORT", port.to_string()),
        ("LOG_FORMAT", "json".to_string()),
        ("LOG_LEVEL", "info".to_string()),
        ("RELAY_ENABLED", "false".to_string()),
    ];
    let mut api = spawn("api", &config.database_url, &env, Stdio::piped());
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/health")).await;
    let admin = Authenticator::hs256(&config.jwt_secret)
        .mint(&Claims::admin("test", 600))
        .unwrap();
    let http = reqwest::Client::new();
    let tenant: Value = http
        .post(format!("{base}/api/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": shared::testkit::unique("logs")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant = tenant["id"].as_str().unwrap().to_string();
    let resp = http
        .put(format!("{base}/api/v1/tenants/{tenant}/consumers/q/config"))
        .bearer_auth(&admin)
        .header("x-request-id", "req-log-test")
        .json(&json!({"workers": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("x-request-id").unwrap(),
        "req-log-test",
        "request id echoed"
    );
    api.kill().await.ok();

    let lines = shared::testkit::json_lines(&mut api).await;
    let out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let ours: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "req-log-test")
        .collect();
    assert!(ours.len() >= 2, "the request's lines carry its id: {out}");
    for line in &ours {
        assert!(line["timestamp"].is_string() && line["level"].is_string());
        assert_eq!(line["span"]["tenant_id"], tenant.as_str());
    }
    assert!(
        ours.iter()
            .any(|l| l["message"] == "consumer config changed")
    );
    assert!(
        ours.iter().any(|l| l["status"] == 200),
        "the response is logged with its status"
    );
    assert!(!out.contains(&admin), "the token never appears in the logs");
    assert!(!out.contains(&config.jwt_secret), "nor the secret");
}
