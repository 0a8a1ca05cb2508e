//! The local Lambda loop (`make dev`) under test: api, consumer and provisioner run under
//! `cargo lambda watch` (as Lambda runs them), LocalStack plays SQS and Lambda's control plane
//! (scripts/localstack.sh starts it), and the local triggers play Amazon MQ and the SQS event
//! source mapping. Each test runs its own watch on a port of its own, its own tenant and, where
//! it needs one, its own control queue.

mod harness;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use harness::{Group, Watch, base_env, bin, fixture, localstack, test_config};
use serde_json::{Value, json};
use shared::{
    auth::{Authenticator, Claims},
    testkit::unique,
};

fn sqs() -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(localstack())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build(),
    )
}

fn lambda() -> aws_sdk_lambda::Client {
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
    aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(localstack())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build(),
    )
}

/// The body of an API Gateway response, parsed.
fn body_of(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a string body")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_functions_answer_the_fixture_events_under_cargo_lambda_watch() {
    let config = test_config();
    shared::testkit::prepare_database(&config).await;
    let mut watch = Watch::start(&base_env(&config));
    watch.wait_for_api().await;

    // API Gateway HTTP API, payload 2.0. The fixture asks for `/`, which is no route.
    let (resp, error) = watch
        .invoke("api", &fixture("apigw-v2-http-request.json"))
        .await;
    assert_eq!(error, None, "{resp}");
    assert_eq!(resp["statusCode"], 404, "{resp}");
    assert_eq!(body_of(&resp)["error"]["code"], "not_found", "{resp}");

    // The same event for a route: the health check answers from PostgreSQL and RabbitMQ.
    let mut health = fixture("apigw-v2-http-request.json");
    health["rawPath"] = json!("/health");
    health["requestContext"]["http"]["path"] = json!("/health");
    let (resp, error) = watch.invoke("api", &health).await;
    assert_eq!(error, None, "{resp}");
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(body_of(&resp)["status"], "ok", "{resp}");

    // Amazon MQ for RabbitMQ: queue `test` is not a tenant work queue, so its message is
    // reported as unknown and nothing is processed or failed.
    let (resp, error) = watch
        .invoke("consumer", &fixture("aws-rmq-event.json"))
        .await;
    assert_eq!(error, None, "{resp}");
    assert_eq!(resp["queues"][0]["queue"], "test", "{resp}");
    assert_eq!(resp["queues"][0]["unknown"], 1, "{resp}");
    assert_eq!(resp["queues"][0]["completed"], 0, "{resp}");

    // SQS: the fixture's body is no control job, so the partial batch response names it (SQS
    // redelivers just that one, then moves it to the DLQ).
    let (resp, error) = watch
        .invoke("provisioner", &fixture("sqs-event.json"))
        .await;
    assert_eq!(error, None, "{resp}");
    assert_eq!(
        resp,
        json!({"batchItemFailures": [{"itemIdentifier": "MessageID_1"}]})
    );

    // The router serves the API at its API Gateway paths, with the API's own errors.
    let resp = watch
        .http()
        .get(format!("{}/api/v1/tenants", watch.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
}

/// A control queue of this test's own in LocalStack, with a DLQ, as the template creates it:
/// (queue URL, DLQ URL).
async fn control_queue() -> (String, String) {
    let sqs = sqs();
    let name = unique("control");
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("LocalStack SQS (scripts/localstack.sh starts it)");
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(dlq.queue_url().unwrap())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let redrive = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}).to_string();
    let queue = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "5",
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            redrive,
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    (queue, dlq.queue_url().unwrap().to_string())
}

/// Polls until `probe` gives `Some`, or panics with `what` after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn reserved_concurrency(function: &str) -> Option<i32> {
    lambda()
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
        .ok()
        .and_then(|c| c.reserved_concurrent_executions)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_goes_api_function_broker_consumer_function_to_completed() {
    let config = test_config();
    shared::testkit::prepare_database(&config).await;
    let mut env = base_env(&config);
    env.push(("CONTROL_PLANE", "aws".into()));
    let (queue, dlq) = control_queue().await;
    env.push(("CONTROL_QUEUE_URL", queue.clone()));
    // A job the provisioner cannot read, ahead of the real ones: it must not hold them up.
    sqs()
        .send_message()
        .queue_url(&queue)
        .message_body("not a job")
        .send()
        .await
        .unwrap();
    // The placeholder template function the localstack/ init script creates.
    env.push(("TENANT_FUNCTION_TEMPLATE", "consumer".into()));
    let mut watch = Watch::start(&env);
    watch.wait_for_api().await;
    let http = watch.http().clone();
    let auth = Authenticator::hs256(&config.jwt_secret);
    let admin = auth.mint(&Claims::admin("lambda-loop", 600)).unwrap();

    // Onboarding: API function -> SQS -> provisioner function -> LocalStack's Lambda.
    let mut trigger = Command::new(bin("provisioner"));
    trigger
        .args(["trigger", "--invoke", &watch.url])
        .envs(env.iter().map(|(k, v)| (k, v)));
    let _trigger = Group::spawn("provisioner-trigger", trigger);
    let created = http
        .post(format!("{}/api/v1/tenants", watch.url))
        .bearer_auth(&admin)
        .json(&json!({"name": unique("lambda-loop")}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let tenant: Value = created.json().await.unwrap();
    let tenant_id = tenant["id"].as_str().unwrap().to_string();
    // A new tenant is pooled: onboarded onto the pooled consumer, no function of its own.
    let capacity_url = format!("{}/api/v1/tenants/{tenant_id}/capacity", watch.url);
    eventually(
        "the tenant is not onboarded onto the pooled function",
        Duration::from_secs(120),
        || async {
            let c: Value = http
                .get(&capacity_url)
                .bearer_auth(&admin)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (c["state"] == "applied" && c["tier"] == "pooled" && c["function_name"] == "consumer")
                .then_some(())
        },
    )
    .await;
    let function = format!("{}{tenant_id}", config.control.function_prefix);
    assert!(
        lambda()
            .get_function()
            .function_name(&function)
            .send()
            .await
            .is_err_and(|e| e
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())),
        "a pooled tenant has no function of its own"
    );

    // The event source plays Amazon MQ: deliveries of this tenant's queues go to the consumer
    // function through the Invoke API (never processed in its own process).
    let mut source = Command::new(bin("consumer"));
    source
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("CONSUMER_INVOKE_ENDPOINT", &watch.url)
        .env("CONSUMER_FUNCTION_NAME", "consumer")
        .env("CONSUMER_TENANTS", &tenant_id)
        .env("CONSUMER_CONFIG_POLL_INTERVAL", "300ms")
        .env("METRICS_ENABLED", "false");
    let _source = Group::spawn("event-source", source);

    let token = auth
        .mint(&Claims::tenant(tenant_id.parse().unwrap(), 600))
        .unwrap();
    let messages = format!("{}/api/v1/tenants/{tenant_id}/messages", watch.url);
    let published = http
        .post(&messages)
        .bearer_auth(&token)
        .json(&json!({"queue_name": "orders", "message_body": {"order": 42}}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);
    let message_id = published.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let message: Value = eventually(
        "the message is not completed",
        Duration::from_secs(120),
        || async {
            let m: Value = http
                .get(format!("{messages}/{message_id}"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (m["status"] == "completed").then_some(m)
        },
    )
    .await;
    assert_eq!(message["attempts"], 1, "{message}");
    let log = std::fs::read_to_string(&watch.group.log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("batch processed") && l.contains(&tenant_id)),
        "the consumer function under cargo lambda watch did not log the batch:\n{}",
        watch.group.log_tail()
    );

    // A capacity makes the tenant dedicated; the change travels the same way and is read back
    // from LocalStack's Lambda: its own function, reserving the effective capacity (3 asked,
    // 2 enabled queues: default and orders).
    let changed = http
        .put(format!("{}/api/v1/tenants/{tenant_id}/capacity", watch.url))
        .bearer_auth(&admin)
        .json(&json!({"reserved_concurrency": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "{:?}", changed.text().await);
    eventually(
        "the dedicated tenant function's reserved concurrency is not the effective capacity",
        Duration::from_secs(120),
        || async { reserved_concurrency(&function).await.filter(|&n| n == 2) },
    )
    .await;
    let status: Value = http
        .get(format!(
            "{}/api/v1/tenants/{tenant_id}/consumers",
            watch.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let orders = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["queue_name"] == "orders")
        .unwrap_or_else(|| panic!("no orders queue: {status}"));
    assert_eq!(orders["tier"], "dedicated", "{status}");
    assert_eq!(orders["capacity"]["desired_concurrency"], 3, "{status}");
    assert_eq!(orders["capacity"]["effective_concurrency"], 2, "{status}");
    assert_eq!(orders["capacity"]["applied_concurrency"], 2, "{status}");
    assert_eq!(orders["capacity"]["applied_by"], "provisioner", "{status}");
    // The queue the publish created got its mapping job through SQS too; the provisioner
    // records it `unsupported` because LocalStack has no Amazon MQ.
    assert_eq!(orders["mapping"]["state"], "unsupported", "{status}");

    // The unreadable job was reported failed on every delivery, redelivered after the
    // visibility timeout, and moved to the DLQ by the redrive policy after 3 receives.
    let dead = eventually(
        "the bad job did not reach the DLQ",
        Duration::from_secs(90),
        || async {
            sqs()
                .receive_message()
                .queue_url(&dlq)
                .wait_time_seconds(1)
                .send()
                .await
                .ok()?
                .messages
                .filter(|m| !m.is_empty())
        },
    )
    .await;
    assert_eq!(dead[0].body(), Some("not a job"));
}
