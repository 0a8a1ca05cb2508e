//! The provisioner binary in Lambda mode, driven by the stand-in Runtime API (shared::testkit):
//! its log lines carry the invocation's Lambda request id, and Lambda's shutdown ends it cleanly.

use std::{process::Stdio, time::Duration};

use serde_json::Value;
use shared::testkit::{
    Invocation, RuntimeApi, json_lines, prepare_database, shut_down, test_config,
};
use tokio::process::Command;

/// AWS's aws:sqs sample event (consumer's tests/fixtures): its body "Message Body" is no job,
/// so the record fails and is reported as a batch item failure.
fn sample_sqs_event() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../consumer/tests/fixtures/sqs-event.json"
    ))
    .expect("SQS fixture");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_failed_job_is_logged_with_the_lambda_request_id() {
    let config = test_config();
    prepare_database(&config).await;
    let rt = RuntimeApi::start().await;
    let mut provisioner = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .envs(rt.lambda_env("provisioner", Duration::from_secs(90)))
        .env("DATABASE_URL", &config.database_url)
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start provisioner");

    let out = rt.invoke(sample_sqs_event()).await;
    let Invocation::Response(resp) = out else {
        panic!("expected a response, got {out:?}");
    };
    assert_eq!(
        resp["batchItemFailures"][0]["itemIdentifier"], "MessageID_1",
        "{resp}"
    );
    let request_id = rt.request_ids()[0].clone();

    let status = shut_down(&rt, &mut provisioner, Duration::from_secs(2)).await;
    assert!(status.success(), "exit status {status:?}");

    let lines = json_lines(&mut provisioner).await;
    let out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let failed = lines
        .iter()
        .find(|l| l["message"] == "control job failed")
        .unwrap_or_else(|| panic!("the failure is logged: {out}"));
    assert_eq!(failed["message_id"], "MessageID_1");
    assert_eq!(
        failed["span"]["request_id"],
        request_id.as_str(),
        "{failed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "closed the broker and database connections"),
        "{out}"
    );
}
