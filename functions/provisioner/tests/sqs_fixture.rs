//! The provisioner binary in Lambda mode with the `aws:sqs` fixture (`tests/fixtures`, source in
//! its README), through the stand-in Runtime API (`shared::testkit::RuntimeApi`); and the
//! fixture copies the local Lambda loop reads.

use std::{fs, path::Path, process::Stdio, time::Duration};

use serde_json::{Value, json};
use shared::testkit::{Invocation, RuntimeApi, test_config};

const SQS_EVENT: &str = include_str!("fixtures/sqs-event.json");

/// The record's body (`Message Body`) is no control job: the provisioner answers a partial batch
/// response naming it, so SQS redelivers only that record and, after `maxReceiveCount`, moves it
/// to the DLQ ("Handling errors for an SQS event source in Lambda", reporting batch item
/// failures: https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html).
/// Reading the job fails before any AWS call, so no AWS endpoint is needed: the one given is
/// closed.
#[tokio::test]
async fn an_unreadable_job_is_reported_as_a_batch_item_failure() {
    let config = test_config();
    shared::testkit::prepare_database(&config).await;
    let rt = RuntimeApi::start().await;
    let _provisioner = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .envs(rt.lambda_env("msgsvc-provisioner", Duration::from_secs(60)))
        .env("DATABASE_URL", &config.database_url)
        .env("RABBITMQ_URL", &config.rabbitmq_url)
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", closed_port()),
        )
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the provisioner binary");

    let event: Value = serde_json::from_str(SQS_EVENT).unwrap();
    let answer = rt.invoke(event).await;
    assert_eq!(
        answer,
        Invocation::Response(json!({
            "batchItemFailures": [{ "itemIdentifier": "MessageID_1" }]
        }))
    );
}

fn closed_port() -> u16 {
    // Bound and released: nothing listens there.
    shared::testkit::free_port()
}

/// The local Lambda loop tests read their API Gateway and SQS fixtures from the consumer's
/// fixture directory; the API's and the provisioner's own are the reference.
#[test]
fn the_fixture_copies_equal_their_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |p: &str| fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    for (copy, reference) in [
        (
            "functions/consumer/tests/fixtures/apigw-v2-http-request.json",
            "functions/api/tests/fixtures/apigw-v2-http-request.json",
        ),
        (
            "functions/consumer/tests/fixtures/sqs-event.json",
            "functions/provisioner/tests/fixtures/sqs-event.json",
        ),
    ] {
        assert_eq!(
            read(copy),
            read(reference),
            "{copy} drifted from {reference}"
        );
    }
}
