//! The consumer binary in Lambda mode, invoked through the stand-in Runtime API
//! (`shared::testkit::RuntimeApi`) with the `aws:rmq` events AWS sends and documents
//! (`tests/fixtures`, sources in its README). Events are re-addressed to a test tenant's queue
//! here, in the test; the files stay as AWS wrote them.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use lapin::options::BasicGetOptions;
use serde_json::{Value, json};
use shared::{
    AppContext,
    broker::{QueueRef, work_queue},
    domain::{MessageId, MessageStatus, QueueName, TenantId},
    testkit::{Invocation, RuntimeApi},
};
use tokio::{
    io::AsyncBufReadExt,
    process::{Child, Command},
};

use crate::helpers::{context, message, publish, tenant};

/// AWS's capture of a message published without properties: `priority`, `timestamp`,
/// `messageId` and the others are `null` (https://github.com/aws/aws-lambda-dotnet/pull/1565,
/// issue 1562). Queue `TestQueue::/`.
const CAPTURE: &str = include_str!("../fixtures/aws-rmq-capture-null-fields.json");
/// The documentation's sample (https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html).
/// Queue `test::/`.
const DOCS_SAMPLE: &str = include_str!("../fixtures/aws-rmq-event.json");

/// The consumer binary in Lambda mode, its stdout (JSON logs and EMF documents) collected.
pub(crate) struct Function {
    rt: RuntimeApi,
    stdout: Arc<Mutex<Vec<String>>>,
    _child: Child,
}

impl Function {
    async fn start(ctx: &AppContext) -> Self {
        Self::start_with(ctx, &[]).await
    }

    /// [`Function::start`] with more environment variables.
    pub(crate) async fn start_with(ctx: &AppContext, env: &[(&str, &str)]) -> Self {
        let rt = RuntimeApi::start().await;
        let mut child = Command::new(env!("CARGO_BIN_EXE_consumer"))
            .envs(rt.lambda_env("msgsvc-consumer", Duration::from_secs(60)))
            .envs(env.iter().copied())
            // The database is migrated by the testkit; the consumer in Lambda mode never does.
            .env("DATABASE_URL", &ctx.config.database_url)
            .env("RABBITMQ_URL", &ctx.config.rabbitmq_url)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the consumer binary");
        let stdout: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            rt,
            stdout,
            _child: child,
        }
    }

    /// Invokes the function; panics unless it answered with a response (not an error).
    pub(crate) async fn invoke(&self, event: Value) -> Value {
        match self.rt.invoke(event).await {
            Invocation::Response(r) => r,
            other => panic!(
                "the invocation failed: {other:?}\nstdout:\n{}",
                self.stdout.lock().unwrap().join("\n")
            ),
        }
    }

    /// The JSON lines on stdout that match, waiting up to 5 s for at least one (EMF is
    /// flushed around the answer, not necessarily before it).
    async fn lines(&self, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        for _ in 0..50 {
            let found: Vec<Value> = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| matches(v))
                .collect();
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Vec::new()
    }
}

/// The fixture's only queue and messages moved to `queue`, the first message given `id`.
fn readdressed(fixture: &str, queue: &QueueRef, id: Option<MessageId>) -> Value {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    let by_queue = event["rmqMessagesByQueue"].as_object_mut().unwrap();
    let (_, mut messages) = by_queue.clone().into_iter().next().unwrap();
    if let Some(id) = id {
        messages[0]["basicProperties"]["messageId"] = json!(id.to_string());
    }
    event["rmqMessagesByQueue"] = json!({ format!("{}::/", work_queue(queue)): messages });
    event
}

fn queue_of(t: TenantId, name: &str) -> QueueRef {
    QueueRef::new(t, QueueName::parse(name).unwrap())
}

#[tokio::test]
async fn the_real_capture_and_the_docs_sample_complete_our_messages() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let queue = queue_of(t, "captured");
    let f = Function::start(&ctx).await;

    for (fixture, name) in [(CAPTURE, "capture"), (DOCS_SAMPLE, "docs sample")] {
        let id = publish(&ctx, t, "captured", json!({ "from": name })).await;
        let event = readdressed(fixture, &queue, Some(id));
        if fixture == CAPTURE {
            // What failed aws_lambda_events 1.2's u8/u64 and .NET's int reaches the binary.
            let props = &event["rmqMessagesByQueue"][format!("{}::/", work_queue(&queue))][0]["basicProperties"];
            assert!(props["priority"].is_null() && props["timestamp"].is_null());
        }
        let answer = f.invoke(event).await;
        let q = &answer["queues"][0];
        assert_eq!(q["queue"], work_queue(&queue), "{name}: {answer}");
        assert_eq!(
            (&q["completed"], &q["unknown"]),
            (&json!(1), &json!(0)),
            "{name}: {answer}"
        );
        assert_eq!(
            message(&ctx, t, id).await.status,
            MessageStatus::Completed,
            "{name}"
        );
    }
}

/// Our own publish sets no priority; the event the local event source builds from the delivery
/// says so with `"priority": null`, as Amazon MQ does, and the binary processes it.
#[tokio::test]
async fn a_message_published_without_priority_is_processed() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let queue = queue_of(t, "nopriority");
    let id = publish(&ctx, t, "nopriority", json!({"n": 1})).await;
    let channel = ctx.brokers.home().broker.channel().await.unwrap();
    let mut delivery = None;
    for _ in 0..50 {
        delivery = channel
            .basic_get(
                work_queue(&queue).as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if delivery.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivery = delivery.expect("the message is on its work queue").delivery;
    assert_eq!(*delivery.properties.priority(), None);
    let event = consumer::rmq::event_from_deliveries(&queue, "/", &[delivery]);
    let event = serde_json::to_value(&event).unwrap();
    let props =
        &event["rmqMessagesByQueue"][format!("{}::/", work_queue(&queue))][0]["basicProperties"];
    assert_eq!(props["priority"], Value::Null, "{event}");
    assert_eq!(props["messageId"], id.to_string());

    let f = Function::start(&ctx).await;
    let answer = f.invoke(event).await;
    assert_eq!(answer["queues"][0]["completed"], 1, "{answer}");
    assert_eq!(message(&ctx, t, id).await.status, MessageStatus::Completed);
}

/// Another publisher's messages on a tenant queue (no message id, an id that is no UUID, a
/// UUID that is none of ours; their own bodies) share a batch with ours: ours completes, the
/// invocation succeeds (so Amazon MQ acknowledges the batch), and theirs are counted in the
/// answer, the logs, the metric (EMF) and the status API.
#[tokio::test]
async fn foreign_messages_in_a_batch_are_acknowledged_and_counted() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let queue = queue_of(t, "shared-queue");
    let id = publish(&ctx, t, "shared-queue", json!({"mine": true})).await;
    let mut event = readdressed(CAPTURE, &queue, Some(id));
    let key = format!("{}::/", work_queue(&queue));
    let ours = event["rmqMessagesByQueue"][&key][0].clone();
    let foreign = |message_id: Value| {
        let mut m = ours.clone();
        m["basicProperties"]["messageId"] = message_id;
        m["basicProperties"]["contentType"] = json!("application/xml");
        m["data"] = json!("PG9yZGVyIGlkPSI3Ii8+"); // <order id="7"/>
        m
    };
    let batch = event["rmqMessagesByQueue"][&key].as_array_mut().unwrap();
    batch.push(foreign(Value::Null));
    batch.push(foreign(json!("ORD-7")));
    batch.push(foreign(json!(uuid::Uuid::new_v4().to_string())));

    let f = Function::start(&ctx).await;
    let answer = f.invoke(event).await;
    let q = &answer["queues"][0];
    assert_eq!(
        (&q["completed"], &q["unknown"]),
        (&json!(1), &json!(3)),
        "{answer}"
    );
    assert_eq!(
        q["unmapped"],
        json!({"no_message_id": 1, "invalid_message_id": 1, "unknown_message": 1,
               "not_a_tenant_queue": 0}),
        "{answer}"
    );
    assert_eq!(message(&ctx, t, id).await.status, MessageStatus::Completed);

    // Status API: the queue's count and when it was last seen.
    let status = shared::services::consumers::status(&ctx, Some(t))
        .await
        .unwrap();
    let s = status
        .iter()
        .find(|s| s.queue_name == "shared-queue")
        .unwrap();
    assert_eq!(s.unmapped.count, 3);
    assert!(s.unmapped.last_seen_at.is_some());

    // Logs: one warning per reason, with the queue and the count.
    let tenant_id = t.to_string();
    let warnings = f
        .lines(|l| l["level"] == "WARN" && l["tenant_id"] == tenant_id.as_str())
        .await;
    let mut reasons: Vec<&str> = warnings
        .iter()
        .map(|w| {
            assert_eq!(
                (&w["queue"], &w["count"]),
                (&json!("shared-queue"), &json!(1)),
                "{w}"
            );
            w["reason"].as_str().unwrap()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["invalid_message_id", "no_message_id", "unknown_message"]
    );

    // Metric: CloudWatch EMF, one series per reason with the tenant and queue.
    let emf = f
        .lines(|l| {
            l.get("_aws").is_some()
                && l["tenant_id"] == tenant_id.as_str()
                && l.get("msgsvc_consumer_unmapped_messages_total").is_some()
        })
        .await;
    let mut counted: Vec<(String, Value)> = emf
        .iter()
        .map(|d| {
            assert_eq!(d["queue"], "shared-queue", "{d}");
            (
                d["reason"].as_str().unwrap().to_string(),
                d["msgsvc_consumer_unmapped_messages_total"].clone(),
            )
        })
        .collect();
    counted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        counted,
        [
            ("invalid_message_id".to_string(), json!(1)),
            ("no_message_id".to_string(), json!(1)),
            ("unknown_message".to_string(), json!(1)),
        ],
        "{emf:?}"
    );
}

/// The fixtures as AWS wrote them name queues that are not ours (`TestQueue::/`, `test::/`):
/// the invocation still succeeds, and every message is counted unmapped.
#[tokio::test]
async fn the_unmodified_fixtures_succeed_with_everything_unmapped() {
    let ctx = context().await;
    let f = Function::start(&ctx).await;
    for (fixture, queue) in [(CAPTURE, "TestQueue"), (DOCS_SAMPLE, "test")] {
        let answer = f.invoke(serde_json::from_str(fixture).unwrap()).await;
        assert_eq!(
            answer["queues"],
            json!([{
                "queue": queue, "completed": 0, "retried": 0, "dead_lettered": 0,
                "duplicates": 0, "deferred": 0, "held_back": 0, "unknown": 1, "put_back": 0,
                "unmapped": {"no_message_id": 0, "invalid_message_id": 0, "unknown_message": 0,
                             "not_a_tenant_queue": 1},
            }]),
            "{answer}"
        );
        let warned = f
            .lines(|l| l["level"] == "WARN" && l["queue"] == queue)
            .await;
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(
            (&warned[0]["reason"], &warned[0]["count"]),
            (&json!("not_a_tenant_queue"), &json!(1))
        );
    }
}
