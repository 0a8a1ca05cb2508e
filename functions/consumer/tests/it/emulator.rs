//! The local event source plays Amazon MQ's event source mapping and Lambda's invocation rules,
//! and is no more forgiving than they are. Each test names the AWS source of the rule it holds.
//! Most run the event source against a stand-in function behind a small Lambda Invoke API
//! server, which records every event it is invoked with and answers as it is told.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use consumer::local::{batch::MAX_PAYLOAD_BYTES, dispatch::Dispatcher, event_source::Options};
use lapin::{
    BasicProperties,
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};
use serde_json::{Value, json};
use shared::{
    AppContext, Config,
    broker::{QueueRef, work_queue},
    delivery::{Outcome, Processor, Task},
    domain::{MessageStatus, QueueName, TenantId},
    testkit,
};

use crate::helpers::{
    Running, configure, publish_many, start_dispatching, start_event_source, tenant, wait_all,
};

/// The pause after a failed invocation in these tests (1 s by default).
const PAUSE: Duration = Duration::from_millis(300);

async fn context(tweak: impl FnOnce(&mut Config)) -> AppContext {
    let mut c = crate::helpers::config();
    tweak(&mut c);
    shared::observability::telemetry::init(&c);
    testkit::context(c, "consumer-emulator-test").await
}

/// How the stand-in function answers one invocation.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Success,
    /// What the Invoke API answers when the function failed: 200 with `X-Amz-Function-Error`.
    FunctionError,
    Status(u16),
    /// Never answers.
    Hang,
}

#[derive(Clone)]
struct Call {
    at: Instant,
    bytes: usize,
    event: Value,
}

#[derive(Default)]
struct Function {
    script: Mutex<VecDeque<Answer>>,
    calls: Mutex<Vec<Call>>,
}

/// A stand-in function behind the Lambda Invoke API
/// (`POST /2015-03-31/functions/{name}/invocations`); it answers `Success` once its script is
/// used up.
struct StandIn {
    endpoint: String,
    function: Arc<Function>,
}

impl StandIn {
    async fn start(script: impl IntoIterator<Item = Answer>) -> Self {
        let function = Arc::new(Function {
            script: Mutex::new(script.into_iter().collect()),
            calls: Mutex::default(),
        });
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            // Events up to the payload limit and beyond, to see any that goes over.
            .layer(DefaultBodyLimit::max(4 * MAX_PAYLOAD_BYTES))
            .with_state(function.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { endpoint, function }
    }

    fn dispatcher(&self) -> Dispatcher {
        Dispatcher::invoke(&self.endpoint, "consumer").unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.function.calls.lock().unwrap().clone()
    }

    /// Waits for `n` invocations; panics with what came after `timeout`.
    async fn wait_calls(&self, n: usize, timeout: Duration) -> Vec<Call> {
        let deadline = Instant::now() + timeout;
        loop {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "{} invocations after {timeout:?}, expected {n}: {:?}",
                calls.len(),
                calls.iter().map(|c| ids(&c.event)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn invoke(
    State(f): State<Arc<Function>>,
    Path(_name): Path<String>,
    body: Bytes,
) -> Response {
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    f.calls.lock().unwrap().push(Call {
        at: Instant::now(),
        bytes: body.len(),
        event,
    });
    let answer = f.script.lock().unwrap().pop_front();
    match answer.unwrap_or(Answer::Success) {
        Answer::Success => (StatusCode::OK, "null").into_response(),
        Answer::FunctionError => (
            StatusCode::OK,
            [("x-amz-function-error", "Unhandled")],
            r#"{"errorMessage":"stand-in failure","errorType":"Error"}"#,
        )
            .into_response(),
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// The one queue's messages of an event.
fn messages(event: &Value) -> &Vec<Value> {
    let queues = event["rmqMessagesByQueue"].as_object().unwrap();
    assert_eq!(queues.len(), 1, "one queue per event: {queues:?}");
    queues.values().next().unwrap().as_array().unwrap()
}

/// Each message's id and redelivered flag.
fn ids(event: &Value) -> Vec<(String, bool)> {
    messages(event)
        .iter()
        .map(|m| {
            (
                m["basicProperties"]["messageId"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
                m["redelivered"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn named(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn with_id(id: &str) -> BasicProperties {
    BasicProperties::default().with_message_id(id.into())
}

/// A tenant queue configured (workers 1) and declared.
async fn queue(ctx: &AppContext, name: &str) -> (TenantId, QueueRef) {
    let t = tenant(ctx).await;
    configure(ctx, t, name, 1, 0, 100, None).await;
    let q = QueueRef::new(t, QueueName::parse(name).unwrap());
    ctx.brokers.home().broker.ensure_queue(&q).await.unwrap();
    (t, q)
}

/// Publishes straight to the work queue, confirmed, as any RabbitMQ client would.
async fn publish_raw(ctx: &AppContext, q: &QueueRef, messages: Vec<(Vec<u8>, BasicProperties)>) {
    let ch = ctx.brokers.home().broker.channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (body, props) in messages {
        let confirm = ch
            .basic_publish(
                "".into(),
                work_queue(q).as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.is_ack());
    }
    let _ = ch.close(200, "published".into()).await;
}

/// A tenant queue (workers 1) whose work queue dead-letters to a capture queue of its own,
/// declared before the service declares it (configuring the queue does), which then keeps it
/// as it is: the service's work queues have no dead-letter exchange, so a rejected delivery
/// would vanish unseen.
async fn queue_with_capture(ctx: &AppContext, name: &str) -> (TenantId, QueueRef, String) {
    let t = tenant(ctx).await;
    let q = QueueRef::new(t, QueueName::parse(name).unwrap());
    let work = work_queue(&q);
    let capture = format!("{work}.captured");
    let ch = ctx.brokers.home().broker.channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    ch.queue_declare(capture.as_str().into(), durable, FieldTable::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(&capture));
    ch.queue_declare(work.as_str().into(), durable, args)
        .await
        .unwrap();
    let _ = ch.close(200, "declared".into()).await;
    configure(ctx, t, name, 1, 0, 100, None).await;
    ctx.brokers.home().broker.ensure_queue(&q).await.unwrap();
    (t, q, capture)
}

/// Whether anything reaches the capture queue within a second (dead-lettering is
/// asynchronous).
async fn dead_lettered(ctx: &AppContext, capture: &str) -> bool {
    let ch = ctx.brokers.home().broker.channel().await.unwrap();
    for _ in 0..10 {
        let got = ch
            .basic_get(capture.into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        if got.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn depth(ctx: &AppContext, q: &QueueRef) -> u32 {
    let ch = ctx.brokers.home().broker.channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = ch
        .queue_declare(
            work_queue(q).as_str().into(),
            passive,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = ch.close(200, "checked".into()).await;
    declared.message_count()
}

fn start(
    ctx: &AppContext,
    stand_in: &StandIn,
    t: TenantId,
    tweak: impl FnOnce(&mut Options),
) -> Running {
    let mut opts = Options::from_config(&ctx.config);
    opts.tenants = vec![t];
    opts.redelivery_pause = PAUSE;
    tweak(&mut opts);
    start_dispatching(ctx, stand_in.dispatcher(), opts)
}

/// Sleeps per message and records, per queue and overall, the most messages running at once.
#[derive(Default)]
struct PerQueue {
    running: Mutex<HashMap<String, usize>>,
    peak: Mutex<HashMap<String, usize>>,
    all: Mutex<(usize, usize)>,
}

#[async_trait::async_trait]
impl Processor for PerQueue {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        let queue = job.queue_name.to_string();
        {
            let mut running = self.running.lock().unwrap();
            let n = running.entry(queue.clone()).or_default();
            *n += 1;
            let mut peak = self.peak.lock().unwrap();
            let p = peak.entry(queue.clone()).or_default();
            *p = (*p).max(*n);
            let mut all = self.all.lock().unwrap();
            all.0 += 1;
            all.1 = all.1.max(all.0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        *self.running.lock().unwrap().get_mut(&queue).unwrap() -= 1;
        self.all.lock().unwrap().0 -= 1;
        Outcome::Completed
    }
}

/// Amazon MQ for RabbitMQ runs one execution environment per event source mapping, whatever
/// the function's concurrency: "For RabbitMQ, the number of concurrent execution environments
/// is limited to 1 per Amazon MQ event source mapping"
/// (https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html). With one worker per queue,
/// a queue's messages in flight are its batches in flight.
#[tokio::test]
async fn one_invocation_at_a_time_per_queue_however_high_the_capacity() {
    let ctx = context(|c| c.consumer.batch_size = 2).await;
    let t = tenant(&ctx).await;
    let queues = ["lone", "other"];
    for q in queues {
        configure(&ctx, t, q, 1, 0, 100, None).await;
    }
    shared::db::control_state::set_desired(&ctx.db, t, Some(10))
        .await
        .unwrap();
    let slow = Arc::new(PerQueue::default());
    let source = start_event_source(&ctx, slow.clone(), vec![t]);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let mut ids = Vec::new();
    for q in queues {
        ids.extend(publish_many(&ctx, t, q, 12).await);
    }
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(30),
    )
    .await;
    source.stop().await;

    let peak = slow.peak.lock().unwrap().clone();
    for q in queues {
        assert_eq!(
            peak[q], 1,
            "six batches of {q} at capacity 10 ran one at a time: {peak:?}"
        );
    }
    assert_eq!(
        slow.all.lock().unwrap().1,
        2,
        "the tenant's two queues ran at once"
    );
}

/// The mapping's batch size and window (`ConsumerDefaults::mapping_batching`, what the
/// provisioner gives the real mapping): the mapping invokes the function when the batching
/// window ends, the batch size is met or the 6 MB payload is reached, whichever comes first
/// (https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventsourcemapping.html#invocation-eventsourcemapping-batching).
/// The window is whole seconds (`MaximumBatchingWindowInSeconds`,
/// https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html): 2.9 s
/// configured is a 2 s window.
#[tokio::test]
async fn batches_hold_at_most_the_batch_size_and_a_partial_one_waits_for_the_window() {
    let ctx = context(|c| {
        c.consumer.batch_size = 4;
        c.consumer.batch_window = Duration::from_millis(2900);
    })
    .await;
    let (t, q) = queue(&ctx, "sized").await;
    let names = named("m", 10);
    publish_raw(
        &ctx,
        &q,
        names
            .iter()
            .map(|id| (b"{}".to_vec(), with_id(id)))
            .collect(),
    )
    .await;
    let stand_in = StandIn::start([]).await;
    let source = start(&ctx, &stand_in, t, |_| {});

    let calls = stand_in.wait_calls(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls_later = stand_in.calls().len();
    source.stop().await;

    let sizes: Vec<usize> = calls.iter().map(|c| messages(&c.event).len()).collect();
    assert_eq!(sizes, [4, 4, 2], "batches of at most 4");
    let got: Vec<String> = calls
        .iter()
        .flat_map(|c| ids(&c.event))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, names, "every message once, in order");
    assert_eq!(calls_later, 3);
    let full = calls[1].at - calls[0].at;
    assert!(
        full < Duration::from_secs(1),
        "a full batch goes without waiting for the window ({full:?})"
    );
    // The third batch's window opened after the second invocation returned.
    let partial = calls[2].at - calls[1].at;
    assert!(
        partial >= Duration::from_secs(2) && partial < Duration::from_millis(2800),
        "a partial batch goes when the 2 s window ends ({partial:?})"
    );
    assert_eq!(depth(&ctx, &q).await, 0);
}

/// "Lambda passes all of the records in the batch to the function in a single call, up to the
/// payload limit for synchronous invocation (6 MB)"
/// (https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html), and
/// "Records also go unprocessed if Lambda drops them due to their size. The size limit for
/// Lambda records is 6 MB" (https://docs.aws.amazon.com/lambda/latest/dg/services-mq-errors.html):
/// dropped means never invoked with and not redelivered, so the record is acknowledged (and
/// logged and counted).
#[tokio::test]
async fn an_event_never_exceeds_the_payload_limit_and_a_record_too_large_alone_is_dropped() {
    let ctx = context(|c| {
        c.consumer.batch_size = 10;
        c.consumer.batch_window = Duration::from_secs(1);
    })
    .await;
    let (t, q, capture) = queue_with_capture(&ctx, "large").await;
    // 1.5 MB bodies are 2 MB in base64: three fit an event, four do not. 5 MB is 6.7 MB alone.
    let small = vec![b'x'; 1_500_000];
    let mut published = Vec::new();
    for id in ["s0", "s1", "s2", "s3"] {
        published.push((small.clone(), with_id(id)));
    }
    published.push((vec![b'y'; 5_000_000], with_id("huge")));
    published.push((small.clone(), with_id("s4")));
    publish_raw(&ctx, &q, published).await;
    let stand_in = StandIn::start([]).await;
    let source = start(&ctx, &stand_in, t, |_| {});

    let calls = stand_in.wait_calls(3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls_later = stand_in.calls().len();
    let dropped = source.stats.records_dropped();
    source.stop().await;

    let batches: Vec<Vec<String>> = calls
        .iter()
        .map(|c| ids(&c.event).into_iter().map(|(id, _)| id).collect())
        .collect();
    assert_eq!(
        batches,
        [vec!["s0", "s1", "s2"], vec!["s3"], vec!["s4"]],
        "cut before the limit; the huge record never reaches the function"
    );
    for c in &calls {
        assert!(
            c.bytes <= MAX_PAYLOAD_BYTES,
            "{} bytes over the limit",
            c.bytes
        );
    }
    assert!(
        calls[0].bytes > MAX_PAYLOAD_BYTES * 9 / 10,
        "the first event is filled up to near the limit ({} bytes)",
        calls[0].bytes
    );
    assert_eq!(calls_later, 3);
    assert_eq!(dropped, 1, "the dropped record is counted");
    assert_eq!(depth(&ctx, &q).await, 0, "and acknowledged, not requeued");
    assert!(!dead_lettered(&ctx, &capture).await, "nor rejected");
    let ch = ctx.brokers.home().broker.channel().await.unwrap();
    let _ = ch
        .queue_delete(capture.as_str().into(), Default::default())
        .await;
}

/// Lambda stops a function at its timeout ("The amount of time (in seconds) that Lambda allows a
/// function to run before stopping it",
/// https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html) and the invocation
/// fails, so the mapping redelivers the batch as after any failure (next test). Locally the
/// Invoke API call is cut at `CONSUMER_FUNCTION_TIMEOUT`; the stand-in never answers the
/// first call.
#[tokio::test]
async fn an_invocation_past_the_function_timeout_is_abandoned_and_its_batch_redelivered() {
    // A window lets both published deliveries into one batch however fast the first arrives.
    let ctx = context(|c| {
        c.consumer.batch_size = 2;
        c.consumer.batch_window = Duration::from_secs(1);
    })
    .await;
    let (t, q) = queue(&ctx, "hangs").await;
    publish_raw(
        &ctx,
        &q,
        vec![
            (b"{}".to_vec(), with_id("a")),
            (b"{}".to_vec(), with_id("b")),
        ],
    )
    .await;
    let stand_in = StandIn::start([Answer::Hang]).await;
    let timeout = Duration::from_secs(1);
    let source = start(&ctx, &stand_in, t, |o| o.function_timeout = timeout);

    let calls = stand_in.wait_calls(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls_later = stand_in.calls().len();
    source.stop().await;

    let fresh = [("a".to_string(), false), ("b".to_string(), false)];
    let again = [("a".to_string(), true), ("b".to_string(), true)];
    assert_eq!(ids(&calls[0].event), fresh);
    assert_eq!(
        ids(&calls[1].event),
        again,
        "the whole batch came back redelivered"
    );
    let gap = calls[1].at - calls[0].at;
    assert!(
        gap >= timeout + PAUSE,
        "abandoned at the timeout, then paused ({gap:?})"
    );
    assert_eq!(calls_later, 2, "the success acknowledged the batch");
    assert_eq!(depth(&ctx, &q).await, 0);
}

/// A failed invocation's batch is redelivered; a successful one's is not. AWS: "To redeliver
/// messages upon function error ..." and Lambda's redelivery policy
/// (https://docs.aws.amazon.com/lambda/latest/dg/services-mq-errors.html), processing "at
/// least once" (https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html), and a real
/// capture of a redelivered record, `"redelivered": true`
/// (https://github.com/aws/aws-lambda-dotnet/issues/1562): the batch goes back through the
/// broker, so the flag shows and other deliveries may come between, where a retry in process
/// would hide both. A function error comes back from the Invoke API as 200 with
/// `X-Amz-Function-Error` (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html); a
/// 5xx is a failed invocation too.
#[tokio::test]
async fn a_function_error_or_a_5xx_returns_the_whole_batch_and_success_acknowledges_it() {
    // A window lets all three published deliveries into one batch however fast the first arrives.
    let ctx = context(|c| {
        c.consumer.batch_size = 3;
        c.consumer.batch_window = Duration::from_secs(1);
    })
    .await;
    let (t, q) = queue(&ctx, "fails").await;
    let names = named("f", 3);
    publish_raw(
        &ctx,
        &q,
        names
            .iter()
            .map(|id| (b"{}".to_vec(), with_id(id)))
            .collect(),
    )
    .await;
    let stand_in = StandIn::start([Answer::FunctionError, Answer::Status(502)]).await;
    let source = start(&ctx, &stand_in, t, |_| {});

    let calls = stand_in.wait_calls(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls_later = stand_in.calls().len();
    source.stop().await;

    let expect = |redelivered: bool| -> Vec<(String, bool)> {
        names.iter().map(|n| (n.clone(), redelivered)).collect()
    };
    assert_eq!(ids(&calls[0].event), expect(false));
    assert_eq!(
        ids(&calls[1].event),
        expect(true),
        "after the function error"
    );
    assert_eq!(ids(&calls[2].event), expect(true), "after the 502");
    for pair in calls.windows(2) {
        assert!(pair[1].at - pair[0].at >= PAUSE, "no hot loop");
    }
    assert_eq!(calls_later, 3, "nothing comes back after the success");
    assert_eq!(
        depth(&ctx, &q).await,
        0,
        "the success acknowledged all of it"
    );
}

/// The event as Amazon MQ builds it, key by key, against two AWS sources:
/// - a real capture from Amazon MQ (aws/aws-lambda-dotnet issue 1562,
///   https://github.com/aws/aws-lambda-dotnet/issues/1562, in
///   `fixtures/aws-rmq-capture-null-fields.json`): a message published with no properties but
///   `deliveryMode`, redelivered, every unset property `null` (`priority` included);
/// - AWS's example event (https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html, in
///   `fixtures/aws-rmq-event.json`): string headers as `{"bytes": [...]}`, numbers as numbers,
///   the timestamp as a display string.
#[tokio::test]
async fn events_carry_the_fields_nulls_and_formats_amazon_mq_sends() {
    let ctx = context(|c| c.consumer.batch_size = 2).await;
    let (t, q) = queue(&ctx, "shape").await;
    let capture: Value =
        serde_json::from_str(include_str!("../fixtures/aws-rmq-capture-null-fields.json")).unwrap();
    let example: Value =
        serde_json::from_str(include_str!("../fixtures/aws-rmq-event.json")).unwrap();
    let captured = &capture["rmqMessagesByQueue"]["TestQueue::/"][0];
    let documented = &example["rmqMessagesByQueue"]["test::/"][0];

    // Like the capture: "Hello World", delivery mode 1, nothing else but one string header.
    let mut header = FieldTable::default();
    header.insert(
        "x-test".into(),
        AMQPValue::LongString(LongString::from(b"v1".to_vec())),
    );
    let bare = BasicProperties::default()
        .with_delivery_mode(1)
        .with_headers(header);
    // Like the example (its user id aside: RabbitMQ only lets a client claim its own).
    let mut headers = FieldTable::default();
    for (k, v) in [("header1", "value1"), ("header2", "value2")] {
        headers.insert(
            k.into(),
            AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
        );
    }
    headers.insert("numberInHeader".into(), AMQPValue::LongInt(10));
    let full = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_headers(headers)
        .with_delivery_mode(1)
        .with_priority(34)
        .with_expiration("60000".into())
        .with_timestamp(2021);
    let example_body = STANDARD
        .decode(documented["data"].as_str().unwrap())
        .unwrap();
    publish_raw(
        &ctx,
        &q,
        vec![
            (b"Hello World".to_vec(), bare),
            (example_body.clone(), full),
        ],
    )
    .await;
    // Failed once, so the event we compare is a redelivery, as the capture is.
    let stand_in = StandIn::start([Answer::FunctionError]).await;
    let source = start(&ctx, &stand_in, t, |_| {});
    let calls = stand_in.wait_calls(2, Duration::from_secs(10)).await;
    source.stop().await;
    let event = &calls[1].event;

    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(event), keys(&capture), "event keys");
    assert_eq!(event["eventSource"], capture["eventSource"]);
    assert!(
        event["eventSourceArn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:mq:")
    );
    let queue_keys = keys(&event["rmqMessagesByQueue"]);
    assert_eq!(
        queue_keys.into_iter().collect::<Vec<_>>(),
        [format!("{}::/", work_queue(&q))],
        "keyed \"<queue>::<vhost>\" as the capture's \"TestQueue::/\""
    );
    let ours = messages(event);
    assert_eq!(ours.len(), 2);

    let (mine, theirs) = (&ours[0], captured);
    assert_eq!(keys(mine), keys(theirs), "message keys");
    let props = &mine["basicProperties"];
    assert_eq!(
        keys(props),
        keys(&theirs["basicProperties"]),
        "basicProperties keys"
    );
    for (k, expected) in theirs["basicProperties"].as_object().unwrap() {
        if k != "headers" {
            assert_eq!(&props[k], expected, "basicProperties.{k}");
        }
    }
    assert_eq!(
        props["priority"],
        Value::Null,
        "no priority published: null"
    );
    // Our work queues are quorum queues, whose broker counts redeliveries in a header (the
    // capture's queue added none); the publisher's string header is bytes.
    assert_eq!(
        props["headers"],
        json!({ "x-test": { "bytes": [118, 49] }, "x-delivery-count": 1 })
    );
    assert_eq!(mine["redelivered"], theirs["redelivered"]);
    assert_eq!(mine["data"], theirs["data"]);

    let (mine, theirs) = (&ours[1], documented);
    assert_eq!(keys(mine), keys(theirs), "message keys");
    let props = &mine["basicProperties"];
    assert_eq!(
        keys(props),
        keys(&theirs["basicProperties"]),
        "basicProperties keys"
    );
    for (k, expected) in theirs["basicProperties"].as_object().unwrap() {
        match k.as_str() {
            "userId" => assert_eq!(props[k], Value::Null, "not published"),
            // The example's 80 is not its own body's size (43 bytes).
            "bodySize" => assert_eq!(props[k], json!(example_body.len())),
            "headers" => {
                let mut headers = props[k].clone();
                let count = headers.as_object_mut().unwrap().remove("x-delivery-count");
                assert_eq!(count, Some(json!(1)), "the quorum queue's own header");
                assert_eq!(&headers, expected, "basicProperties.headers");
            }
            _ => assert_eq!(&props[k], expected, "basicProperties.{k}"),
        }
    }
    assert_eq!(props["timestamp"], "Jan 1, 1970, 12:33:41 AM");
    assert_eq!(mine["data"], theirs["data"]);
}
