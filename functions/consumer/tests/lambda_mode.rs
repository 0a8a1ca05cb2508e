//! The consumer binary in Lambda mode, driven by the stand-in Runtime API (shared::testkit):
//! Lambda's logging controls, the request id on its log lines, and graceful shutdown.

use std::{
    collections::HashSet,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use shared::testkit::{
    Invocation, RuntimeApi, json_lines, prepare_database, shut_down, test_config,
};
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
};

/// AWS's aws:rmq sample event (tests/fixtures): its queue `test` is no tenant work queue, so the
/// consumer warns and ignores it.
fn foreign_queue_event() -> Value {
    serde_json::from_str(include_str!("fixtures/aws-rmq-event.json")).unwrap()
}

/// Starts the consumer in Lambda mode with `logging` as the function's logging configuration
/// (Lambda passes it as AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL).
async fn start_consumer(rt: &RuntimeApi, logging: &[(&str, &str)]) -> Child {
    let config = test_config();
    prepare_database(&config).await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_consumer"));
    cmd.envs(rt.lambda_env("consumer", Duration::from_secs(60)))
        .env("DATABASE_URL", &config.database_url)
        // Our own settings, which Lambda's logging configuration overrides.
        .env("LOG_FORMAT", "text")
        .env("LOG_LEVEL", "debug")
        .envs(logging.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("start consumer")
}

fn the_only_request_id(rt: &RuntimeApi) -> String {
    let ids = rt.request_ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

#[tokio::test]
async fn json_lines_at_lambdas_log_level_carry_the_lambda_request_id() {
    let rt = RuntimeApi::start().await;
    let logging = [
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
    ];
    let mut consumer = start_consumer(&rt, &logging).await;

    let out = rt.invoke(foreign_queue_event()).await;
    let Invocation::Response(report) = out else {
        panic!("expected a response, got {out:?}");
    };
    assert_eq!(report["queues"][0]["unknown"], 1, "{report}");
    let request_id = the_only_request_id(&rt);
    consumer.kill().await.unwrap();

    let lines = json_lines(&mut consumer).await;
    let logs: Vec<&Value> = lines.iter().filter(|l| l.get("level").is_some()).collect();
    let warn = logs
        .iter()
        .find(|l| l["message"] == "event for a queue that is not a tenant work queue; ignored")
        .unwrap_or_else(|| panic!("the warning is logged: {lines:?}"));
    assert_eq!(warn["level"], "WARN");
    // Ours, and the Lambda runtime's own span field: both survive a WARN-only filter.
    assert_eq!(warn["span"]["request_id"], request_id.as_str(), "{warn}");
    assert_eq!(warn["span"]["requestId"], request_id.as_str(), "{warn}");
    assert!(
        logs.iter()
            .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"),
        "nothing below Lambda's WARN (LOG_LEVEL=debug is overridden): {logs:?}"
    );
}

/// Local ports of `pid`'s TCP connections to `remote_port`, from /proc.
fn connections_to(pid: u32, remote_port: u16) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?;
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() > 9 && inodes.contains(cols[9]) && port(cols[2]) == Some(remote_port) {
                ports.extend(port(cols[1]));
            }
        }
    }
    ports
}

/// The peer ports of the broker's client connections (RabbitMQ management API).
async fn broker_connection_ports() -> HashSet<u16> {
    let conns: Vec<Value> = reqwest::Client::new()
        .get("http://127.0.0.1:15672/api/connections?columns=peer_port")
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("RabbitMQ management API")
        .json()
        .await
        .unwrap();
    conns
        .iter()
        .filter_map(|c| c["peer_port"].as_u64().map(|p| p as u16))
        .collect()
}

/// Lambda's shutdown: SHUTDOWN to extensions and SIGTERM to the runtime
/// (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html, shutdown phase).
/// The consumer closes its connections and exits 0 well within the phase's 2 s.
#[tokio::test]
async fn on_lambdas_shutdown_the_consumer_closes_its_connections_and_exits() {
    let rt = RuntimeApi::start().await;
    let mut consumer = start_consumer(&rt, &[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).await;
    let out = rt.invoke(foreign_queue_event()).await;
    assert!(matches!(out, Invocation::Response(_)), "{out:?}");
    assert!(
        rt.extensions()
            .iter()
            .any(|e| e == "_lambda-rust-runtime-no-op-graceful-shutdown-helper"),
        "the runtime registered its graceful-shutdown extension: {:?}",
        rt.extensions()
    );
    let pid = consumer.id().unwrap();
    let ours = connections_to(pid, 5672);
    assert_eq!(ours.len(), 1, "one broker connection: {ours:?}");
    // The management API lists a connection once its statistics are in (every 5 s by default).
    wait_until("the broker lists the connection", || async {
        broker_connection_ports().await.is_superset(&ours)
    })
    .await;

    let signalled = Instant::now();
    let status = shut_down(&rt, &mut consumer, Duration::from_secs(2)).await;
    assert!(status.success(), "exit status {status:?}");
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());

    let lines = json_lines(&mut consumer).await;
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "closed the broker and database connections"),
        "{lines:?}"
    );
    let mut stderr = String::new();
    consumer
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("Graceful shutdown completed"), "{stderr}");
    wait_until("the broker no longer lists the connection", || async {
        broker_connection_ports().await.is_disjoint(&ours)
    })
    .await;
}

async fn wait_until<F: Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
