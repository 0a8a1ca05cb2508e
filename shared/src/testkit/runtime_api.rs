//! A stand-in for the Lambda Runtime API and Extensions API that one function process talks to,
//! so a test can run a function binary in Lambda mode (`AWS_LAMBDA_RUNTIME_API` set) and invoke
//! it as Lambda would: one invocation at a time, with Lambda's headers, deadline and errors.
//!
//! It is no more forgiving than Lambda. What it follows:
//! - Runtime API, <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html> and its
//!   OpenAPI document (runtime-api.zip there): `GET /runtime/invocation/next` blocks until an
//!   invocation and answers it with `Lambda-Runtime-Aws-Request-Id`, `-Deadline-Ms`,
//!   `-Invoked-Function-Arn`, `-Trace-Id`, and `-Client-Context`/`-Cognito-Identity` only when the
//!   invocation has them; `POST /runtime/invocation/{id}/response|error` and
//!   `POST /runtime/init/error` answer 202, 400 or 403 with `{"errorMessage","errorType"}`.
//! - The runtime's state machine and error types of AWS's Runtime Interface Emulator
//!   (github.com/aws/aws-lambda-runtime-interface-emulator, `lambda/core/states.go`,
//!   `lambda/rapi/handler`, `lambda/rapi/rendering/render_error.go`): a response or error when
//!   no invocation is running is 403 `InvalidStateTransition`; one for another request id (unknown
//!   or already answered) is 400 `InvalidRequestID`; an init error is accepted only before the
//!   first `next`; a response over the 6 MB synchronous payload quota
//!   (<https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>) is 413 and the
//!   invocation fails with `Function.ResponseSizeTooLarge`.
//! - Extensions API, <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html>:
//!   `POST /2020-01-01/extension/register` needs `Lambda-Extension-Name`, is open only until the
//!   runtime's first `next` (then 403 `Extension.RegistrationClosed`), and answers
//!   `Lambda-Extension-Identifier`; `GET /2020-01-01/extension/event/next` blocks until an event
//!   the extension subscribed to. Extensions registered from the function process are internal
//!   extensions, which may subscribe to `INVOKE` only (the emulator's
//!   `ValidateInternalAgentEvent`); a test names the external ones it plays with
//!   [`RuntimeApi::start_with_external_extensions`]. An invocation reaches the runtime only once
//!   every registered extension waits in `event/next`, as Lambda's Invoke phase starts when the
//!   runtime and all extensions are ready.
//! - Shutdown (same page, "Shutdown phase"; aws-samples/graceful-shutdown-with-aws-lambda): Lambda
//!   sends `SHUTDOWN` to the external extensions subscribed to it and SIGTERM to the runtime,
//!   which is what `lambda_runtime::spawn_graceful_shutdown_handler` waits for (its no-op internal
//!   extension only makes Lambda send the signal). [`RuntimeApi::shutdown`] plays the first part;
//!   the test sends the signal with [`terminate`].
//! - Timeout: the deadline counts from when the invocation reaches the runtime (a cold start's
//!   Init phase has its own limit). Past it the invocation is [`Invocation::TimedOut`] and a late
//!   answer is refused; Lambda would also reset the environment, which is the test's to do.
//!
//! One function process per `RuntimeApi`: a new process registers its extensions anew.

use std::{
    collections::{HashSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{oneshot, watch},
    task::JoinHandle,
};
use uuid::Uuid;

/// Lambda's quota for a synchronous invocation's response payload (6 MB).
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// How long a shutting-down external extension has, at most (the 2,000 ms of the Shutdown phase).
const SHUTDOWN_LIMIT: Duration = Duration::from_millis(2000);
/// How long [`RuntimeApi::invoke`] waits for the process to ask for the invocation before it
/// gives up: Lambda's Init phase has 10 s; a debug build on a busy machine gets more.
const DISPATCH_GUARD: Duration = Duration::from_secs(60);

/// The `JWT_SECRET` of functions run with [`RuntimeApi::lambda_env`]; tests mint their HS256
/// tokens with it.
pub const LAMBDA_JWT_SECRET: &str = "testkit-lambda-jwt-secret";

/// What the invoker gets back.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The body the runtime posted to `.../response` (JSON; a string if it was not JSON).
    Response(Value),
    /// The runtime posted to `.../error`, or the process reported an init error: `errorType`
    /// and `errorMessage` of the body (the header's type when the body has none).
    Error { error_type: String, message: String },
    /// No answer before the deadline.
    TimedOut,
}

/// An error report as the runtime posted it.
#[derive(Debug, Clone)]
pub struct RecordedError {
    /// `None` for `/runtime/init/error`.
    pub request_id: Option<String>,
    /// The `Lambda-Runtime-Function-Error-Type` header.
    pub function_error_type: Option<String>,
    pub body: Bytes,
}

/// Extra invocation data Lambda passes only when the invoker sets it.
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
}

/// The stand-in. Dropping it stops the server.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    /// Binds 127.0.0.1 on a free port. Every extension the process registers is internal.
    pub async fn start() -> Self {
        Self::start_with_external_extensions(&[]).await
    }

    /// As [`start`](Self::start), treating extensions registered under these names as external
    /// (Lambda starts those from `/opt/extensions`; they may subscribe to `SHUTDOWN`).
    pub async fn start_with_external_extensions(names: &[&str]) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(Inner {
                function: Function {
                    name: "function".into(),
                    timeout: Duration::from_secs(3), // Lambda's default timeout
                },
                external: names.iter().map(|n| n.to_string()).collect(),
                ..Inner::default()
            }),
            changed: watch::Sender::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2020-01-01/extension/register", post(register_extension))
            .route(
                "/2020-01-01/extension/event/next",
                get(next_extension_event),
            )
            // The quota is checked by hand (413 as Lambda answers it), not by axum's 2 MB default.
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime API");
        let addr = listener.local_addr().expect("runtime API address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    /// The `host:port` Lambda puts in `AWS_LAMBDA_RUNTIME_API`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The environment Lambda gives a function named `function_name` with this timeout (which
    /// later invocations get as their deadline), and [`LAMBDA_JWT_SECRET`] as `JWT_SECRET`, as
    /// the template gives every function (inside Lambda the development default is refused).
    /// Add `AWS_LAMBDA_LOG_FORMAT`/`_LOG_LEVEL` for a function with a logging configuration, as
    /// Lambda does.
    pub fn lambda_env(&self, function_name: &str, timeout: Duration) -> Vec<(String, String)> {
        self.shared.update(|s| {
            s.function = Function {
                name: function_name.into(),
                timeout,
            }
        });
        let today = chrono::Utc::now().format("%Y/%m/%d");
        [
            ("AWS_LAMBDA_RUNTIME_API", self.addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("{today}/[$LATEST]{}", Uuid::new_v4().simple()),
            ),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("_HANDLER", "bootstrap".into()),
            ("LAMBDA_TASK_ROOT", "/var/task".into()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
            ("TZ", ":UTC".into()),
            ("JWT_SECRET", LAMBDA_JWT_SECRET.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Invokes the function with `event` and waits for its answer.
    pub async fn invoke(&self, event: Value) -> Invocation {
        self.invoke_with(event, InvokeOptions::default()).await
    }

    pub async fn invoke_with(&self, event: Value, options: InvokeOptions) -> Invocation {
        let (tx, rx) = oneshot::channel();
        let request_id = Uuid::new_v4().to_string();
        assert!(
            !self.shared.read(|s| s.shutting_down),
            "invoke after shutdown"
        );
        let served_init_error = self.shared.update(|s| {
            // Lambda serves an init error in answer to the invocation.
            if let Some(e) = s.runtime.failed_init() {
                return Some(error_of(e));
            }
            s.queue.push_back(Queued {
                request_id: request_id.clone(),
                payload: Bytes::from(serde_json::to_vec(&event).expect("event JSON")),
                options,
                answer: tx,
            });
            None
        });
        if let Some(error) = served_init_error {
            return error;
        }
        let started = tokio::time::Instant::now();
        let mut rx = std::pin::pin!(rx);
        loop {
            let wait = tokio::time::sleep(Duration::from_millis(200));
            tokio::select! {
                answer = &mut rx => return answer.expect("runtime API dropped an invocation"),
                _ = wait => {}
            }
            let dispatched = self
                .shared
                .read(|s| !s.queue.iter().any(|q| q.request_id == request_id));
            if !dispatched && started.elapsed() > DISPATCH_GUARD {
                panic!(
                    "the function never asked for invocation {request_id}: is it running with \
                     AWS_LAMBDA_RUNTIME_API={}?",
                    self.addr
                );
            }
            if let Some(e) = self.shared.read(|s| s.runtime.failed_init().cloned()) {
                // The process reported an init error after this invocation was queued.
                self.shared
                    .update(|s| s.queue.retain(|q| q.request_id != request_id));
                return error_of(&e);
            }
        }
    }

    /// The Shutdown phase as far as the Runtime API plays it: no more invocations, and a
    /// `SHUTDOWN` event to each external extension subscribed to it; returns once they took it
    /// (at most 2 s). The test then sends SIGTERM to the process ([`terminate`]).
    pub async fn shutdown(&self) {
        let deadline_ms = epoch_ms(SystemTime::now() + SHUTDOWN_LIMIT);
        let mut changed = self.shared.changed.subscribe();
        self.shared.update(|s| {
            s.shutting_down = true;
            for ext in s.extensions.iter_mut().filter(|e| e.shutdown) {
                ext.events.push_back(json!({
                    "eventType": "SHUTDOWN",
                    "shutdownReason": "spindown",
                    "deadlineMs": deadline_ms,
                }));
            }
        });
        let _ = tokio::time::timeout(SHUTDOWN_LIMIT, async {
            while self
                .shared
                .read(|s| s.extensions.iter().any(|e| !e.events.is_empty()))
            {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Names of the registered extensions.
    pub fn extensions(&self) -> Vec<String> {
        self.shared
            .read(|s| s.extensions.iter().map(|e| e.name.clone()).collect())
    }

    /// The init error the process reported, if any.
    pub fn init_error(&self) -> Option<RecordedError> {
        self.shared.read(|s| s.runtime.failed_init().cloned())
    }

    /// The request ids of the invocations handed to the runtime, in order.
    pub fn request_ids(&self) -> Vec<String> {
        self.shared.read(|s| s.dispatched.clone())
    }

    /// Every invocation error the runtime posted, in order.
    pub fn errors(&self) -> Vec<RecordedError> {
        self.shared.read(|s| s.errors.clone())
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Lambda's shutdown of a function process: the Shutdown phase ([`RuntimeApi::shutdown`]),
/// then SIGTERM; waits for the process to exit (panics after `within`).
pub async fn shut_down(
    rt: &RuntimeApi,
    child: &mut tokio::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    rt.shutdown().await;
    terminate(child.id().expect("the process runs"));
    tokio::time::timeout(within, child.wait())
        .await
        .expect("the process exits within Lambda's shutdown phase")
        .expect("wait for the process")
}

/// A finished process's stdout, one JSON value per line (panics on a line that is not JSON).
pub async fn json_lines(child: &mut tokio::process::Child) -> Vec<Value> {
    use tokio::io::AsyncReadExt as _;
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut out)
        .await
        .expect("read stdout");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect()
}

/// Sends SIGTERM to a process, as Lambda does to the runtime at shutdown.
pub fn terminate(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

struct Shared {
    state: Mutex<Inner>,
    /// Bumped after every change; blocking handlers wait on it.
    changed: watch::Sender<u64>,
}

impl Shared {
    /// Changes the state and wakes every waiting handler.
    fn update<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let r = f(&mut self.state.lock().unwrap());
        self.notify();
        r
    }

    /// Takes something out of the state, waking the others only when there was something.
    fn take<R>(&self, f: impl FnOnce(&mut Inner) -> Option<R>) -> Option<R> {
        let r = f(&mut self.state.lock().unwrap());
        if r.is_some() {
            self.notify();
        }
        r
    }

    fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.state.lock().unwrap())
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

#[derive(Default)]
struct Inner {
    function: Function,
    queue: VecDeque<Queued>,
    runtime: Runtime,
    dispatched: Vec<String>,
    errors: Vec<RecordedError>,
    extensions: Vec<Extension>,
    external: HashSet<String>,
    /// The runtime asked for its first invocation: the Init phase is over.
    init_done: bool,
    shutting_down: bool,
}

#[derive(Default)]
struct Function {
    name: String,
    timeout: Duration,
}

impl Function {
    fn arn(&self) -> String {
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", self.name)
    }
}

struct Queued {
    request_id: String,
    payload: Bytes,
    options: InvokeOptions,
    answer: oneshot::Sender<Invocation>,
}

/// The runtime's state, as the emulator's state machine has it.
#[derive(Default)]
enum Runtime {
    #[default]
    Started,
    Invoking {
        request_id: String,
        answer: oneshot::Sender<Invocation>,
    },
    ResponseSent,
    InitFailed(RecordedError),
}

impl Runtime {
    fn name(&self) -> &'static str {
        match self {
            Runtime::Started => "Started",
            Runtime::Invoking { .. } => "Ready",
            Runtime::ResponseSent => "ResponseSent",
            Runtime::InitFailed(_) => "InitError",
        }
    }

    fn failed_init(&self) -> Option<&RecordedError> {
        match self {
            Runtime::InitFailed(e) => Some(e),
            _ => None,
        }
    }
}

struct Extension {
    id: String,
    name: String,
    invoke: bool,
    shutdown: bool,
    events: VecDeque<Value>,
    /// Waiting in `event/next`.
    ready: bool,
}

/// An error answer in Lambda's shape, `{"errorMessage","errorType"}`.
struct Refusal {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    fn forbidden(error_type: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error_type, message)
    }

    fn not_allowed(from: &str, to: &str) -> Self {
        Self::forbidden(
            "InvalidStateTransition",
            format!(
                "State transition from {from} to {to} failed for runtime. Error: State transition is not allowed"
            ),
        )
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({ "errorMessage": self.message, "errorType": self.error_type });
        (self.status, Json(body)).into_response()
    }
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(json!({ "status": "OK" }))).into_response()
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn error_of(e: &RecordedError) -> Invocation {
    let body: Option<Value> = serde_json::from_slice(&e.body).ok();
    let field = |k: &str| {
        body.as_ref()
            .and_then(|b| b.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Invocation::Error {
        error_type: field("errorType")
            .or_else(|| e.function_error_type.clone())
            .unwrap_or_default(),
        message: field("errorMessage")
            .unwrap_or_else(|| String::from_utf8_lossy(&e.body).into_owned()),
    }
}

fn trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let root = Uuid::new_v4().simple().to_string();
    let parent = Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &root[..24],
        &parent[..16]
    )
}

async fn next_invocation(State(shared): State<Arc<Shared>>) -> Response {
    let mut changed = shared.changed.subscribe();
    if let Some(refused) = shared.update(|s| {
        if let Runtime::InitFailed(_) = s.runtime {
            return Some(Refusal::not_allowed("InitError", "Ready").into_response());
        }
        s.init_done = true; // registration closes with the runtime's first `next`
        None
    }) {
        return refused;
    }
    loop {
        let taken = shared.take(|s| {
            let extensions_ready = s.extensions.iter().all(|e| e.ready);
            if s.shutting_down || !extensions_ready || s.queue.is_empty() {
                return None;
            }
            let q = s.queue.pop_front()?;
            let deadline = SystemTime::now() + s.function.timeout;
            let arn = s.function.arn();
            let trace = trace_id();
            for ext in s.extensions.iter_mut().filter(|e| e.invoke) {
                ext.events.push_back(json!({
                    "eventType": "INVOKE",
                    "deadlineMs": epoch_ms(deadline),
                    "requestId": q.request_id,
                    "invokedFunctionArn": arn,
                    "tracing": { "type": "X-Amzn-Trace-Id", "value": trace },
                }));
            }
            s.dispatched.push(q.request_id.clone());
            s.runtime = Runtime::Invoking {
                request_id: q.request_id.clone(),
                answer: q.answer,
            };
            Some((q.request_id, q.payload, q.options, deadline, arn, trace))
        });
        let Some((request_id, payload, options, deadline, arn, trace)) = taken else {
            if changed.changed().await.is_err() {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            continue;
        };
        spawn_deadline(shared.clone(), request_id.clone(), deadline);
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: String| {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("header value"),
            );
        };
        set("lambda-runtime-aws-request-id", request_id);
        set("lambda-runtime-deadline-ms", epoch_ms(deadline).to_string());
        set("lambda-runtime-invoked-function-arn", arn);
        set("lambda-runtime-trace-id", trace);
        if let Some(c) = options.client_context {
            set("lambda-runtime-client-context", c);
        }
        if let Some(c) = options.cognito_identity {
            set("lambda-runtime-cognito-identity", c);
        }
        set("content-type", "application/json".into());
        return (StatusCode::OK, headers, payload).into_response();
    }
}

/// Ends an invocation still running at its deadline.
fn spawn_deadline(shared: Arc<Shared>, request_id: String, deadline: SystemTime) {
    let wait = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        shared.update(|s| {
            let running =
                matches!(&s.runtime, Runtime::Invoking { request_id: id, .. } if *id == request_id);
            if !running {
                return;
            }
            if let Runtime::Invoking { answer, .. } =
                std::mem::replace(&mut s.runtime, Runtime::ResponseSent)
            {
                let _ = answer.send(Invocation::TimedOut);
            }
        });
    });
}

/// Ends the running invocation `id` with `outcome`, or says why not.
fn answer(
    shared: &Shared,
    id: &str,
    to: &str,
    outcome: impl FnOnce(&mut Inner) -> Invocation,
) -> Result<(), Refusal> {
    shared.update(|s| {
        let Runtime::Invoking { request_id, .. } = &s.runtime else {
            return Err(Refusal::not_allowed(s.runtime.name(), to));
        };
        if request_id != id {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID",
            ));
        }
        let invocation = outcome(s);
        if let Runtime::Invoking { answer, .. } =
            std::mem::replace(&mut s.runtime, Runtime::ResponseSent)
        {
            let _ = answer.send(invocation);
        }
        Ok(())
    })
}

async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let too_large = body.len() > MAX_RESPONSE_BYTES;
    let result = answer(&shared, &id, "InvocationResponse", |_| {
        if too_large {
            return Invocation::Error {
                error_type: "Function.ResponseSizeTooLarge".into(),
                message: format!(
                    "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                ),
            };
        }
        Invocation::Response(
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        )
    });
    match result {
        Err(refused) => refused.into_response(),
        Ok(()) if too_large => Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
        )
        .into_response(),
        Ok(()) => accepted(),
    }
}

fn error_type_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = RecordedError {
        request_id: Some(id.clone()),
        function_error_type: error_type_header(&headers),
        body,
    };
    match answer(&shared, &id, "InvocationErrorResponse", |s| {
        s.errors.push(recorded.clone());
        error_of(&recorded)
    }) {
        Ok(()) => accepted(),
        Err(refused) => refused.into_response(),
    }
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = RecordedError {
        request_id: None,
        function_error_type: error_type_header(&headers),
        body,
    };
    shared.update(|s| {
        if !matches!(s.runtime, Runtime::Started) {
            return Refusal::not_allowed(s.runtime.name(), "InitError").into_response();
        }
        s.runtime = Runtime::InitFailed(recorded);
        accepted()
    })
}

async fn register_extension(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let name = header("lambda-extension-name");
    if name.is_empty() {
        return Refusal::forbidden("Extension.InvalidExtensionName", "Empty extension name")
            .into_response();
    }
    #[derive(serde::Deserialize)]
    struct Register {
        #[serde(default)]
        events: Vec<String>,
    }
    let events = match serde_json::from_slice::<Register>(&body) {
        Ok(r) => r.events,
        Err(e) => return Refusal::forbidden("InvalidRequestFormat", e.to_string()).into_response(),
    };
    let accept_account = header("lambda-extension-accept-feature")
        .split(',')
        .any(|f| f.trim() == "accountId");
    let id = Uuid::new_v4().to_string();
    let registered = shared.update(|s| {
        if s.init_done {
            return Err(Refusal::forbidden(
                "Extension.RegistrationClosed",
                "Extension registration closed already",
            ));
        }
        if s.extensions.iter().any(|e| e.name == name) {
            return Err(Refusal::forbidden(
                "Extension.InvalidExtensionState",
                "Extension with this name already registered",
            ));
        }
        let external = s.external.contains(&name);
        let (mut invoke, mut shutdown) = (false, false);
        for event in &events {
            match event.as_str() {
                "INVOKE" => invoke = true,
                "SHUTDOWN" if external => shutdown = true,
                "SHUTDOWN" => {
                    return Err(Refusal::forbidden(
                        "Extension.InvalidEventType",
                        "SHUTDOWN: event not supported for internal extension",
                    ));
                }
                other => {
                    return Err(Refusal::forbidden(
                        "Extension.InvalidEventType",
                        format!("{other}: invalid event type"),
                    ));
                }
            }
        }
        s.extensions.push(Extension {
            id: id.clone(),
            name: name.clone(),
            invoke,
            shutdown,
            events: VecDeque::new(),
            ready: false,
        });
        Ok(s.function.name.clone())
    });
    let function_name = match registered {
        Ok(f) => f,
        Err(refused) => return refused.into_response(),
    };
    let mut body = json!({
        "functionName": function_name,
        "functionVersion": "$LATEST",
        "handler": "bootstrap",
    });
    if accept_account {
        body["accountId"] = ACCOUNT.into();
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-extension-identifier",
        HeaderValue::from_str(&id).expect("uuid header"),
    );
    (StatusCode::OK, headers, Json(body)).into_response()
}

/// Clears an extension's ready flag when its `event/next` ends, answered or dropped.
struct NotReady<'a> {
    shared: &'a Shared,
    id: &'a str,
}

impl Drop for NotReady<'_> {
    fn drop(&mut self) {
        // Nothing waits for an extension to become busy: no need to wake anyone.
        if let Some(e) =
            (self.shared.state.lock().unwrap().extensions.iter_mut()).find(|e| e.id == self.id)
        {
            e.ready = false;
        }
    }
}

async fn next_extension_event(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(id) = headers
        .get("lambda-extension-identifier")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return Refusal::forbidden(
            "Extension.MissingExtensionIdentifier",
            "Missing Lambda-Extension-Identifier header",
        )
        .into_response();
    };
    let mut changed = shared.changed.subscribe();
    let known = shared.update(|s| match s.extensions.iter_mut().find(|e| e.id == id) {
        Some(e) => {
            e.ready = true;
            true
        }
        None => false,
    });
    if !known {
        return Refusal::forbidden(
            "Extension.UnknownExtensionIdentifier",
            format!("Unknown extension {id}"),
        )
        .into_response();
    }
    let _not_ready = NotReady {
        shared: &shared,
        id: &id,
    };
    loop {
        let event = shared.take(|s| {
            s.extensions
                .iter_mut()
                .find(|e| e.id == id)
                .and_then(|e| e.events.pop_front())
        });
        if let Some(event) = event {
            let mut headers = HeaderMap::new();
            headers.insert(
                "lambda-extension-event-identifier",
                HeaderValue::from_str(&Uuid::new_v4().to_string()).expect("uuid header"),
            );
            return (StatusCode::OK, headers, Json(event)).into_response();
        }
        if changed.changed().await.is_err() {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The stand-in against the documented protocol, spoken by hand.

    use super::*;

    struct Client {
        http: reqwest::Client,
        base: String,
    }

    impl Client {
        fn new(rt: &RuntimeApi) -> Self {
            Self {
                http: reqwest::Client::new(),
                base: format!("http://{}", rt.addr()),
            }
        }

        async fn next(&self) -> reqwest::Response {
            let url = format!("{}/2018-06-01/runtime/invocation/next", self.base);
            self.http.get(url).send().await.unwrap()
        }

        async fn post(&self, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
            let mut req = self
                .http
                .post(format!("{}{path}", self.base))
                .body(body.to_string());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }

        async fn respond(&self, id: &str, body: Value) -> (u16, Value) {
            let path = format!("/2018-06-01/runtime/invocation/{id}/response");
            self.post(&path, &[], body).await
        }

        async fn register(&self, name: Option<&str>, events: &[&str]) -> reqwest::Response {
            let mut req = self
                .http
                .post(format!("{}/2020-01-01/extension/register", self.base))
                .json(&json!({ "events": events }));
            if let Some(name) = name {
                req = req.header("Lambda-Extension-Name", name);
            }
            req.send().await.unwrap()
        }

        async fn extension_next(&self, id: &str) -> reqwest::Response {
            self.http
                .get(format!("{}/2020-01-01/extension/event/next", self.base))
                .header("Lambda-Extension-Identifier", id)
                .send()
                .await
                .unwrap()
        }
    }

    fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn spawn_invoke(rt: &Arc<RuntimeApi>, event: Value) -> JoinHandle<Invocation> {
        let rt = rt.clone();
        tokio::spawn(async move { rt.invoke(event).await })
    }

    #[tokio::test]
    async fn an_invocation_carries_lambdas_headers_and_takes_one_answer() {
        let rt = Arc::new(RuntimeApi::start().await);
        let env = rt.lambda_env("orders", Duration::from_secs(5));
        assert!(env.contains(&("AWS_LAMBDA_RUNTIME_API".into(), rt.addr().to_string())));
        let c = Client::new(&rt);
        let invoked = spawn_invoke(&rt, json!({"hello": "world"}));

        let next = c.next().await;
        assert_eq!(next.status(), 200);
        let id = header(&next, "lambda-runtime-aws-request-id").unwrap();
        let deadline: u64 = header(&next, "lambda-runtime-deadline-ms")
            .unwrap()
            .parse()
            .unwrap();
        let now = epoch_ms(SystemTime::now());
        assert!(
            (now + 4000..=now + 5000).contains(&deadline),
            "{deadline} vs {now}"
        );
        assert!(
            header(&next, "lambda-runtime-invoked-function-arn")
                .unwrap()
                .ends_with(":function:orders")
        );
        assert!(
            header(&next, "lambda-runtime-trace-id")
                .unwrap()
                .starts_with("Root=1-")
        );
        assert_eq!(header(&next, "lambda-runtime-client-context"), None);
        assert_eq!(header(&next, "lambda-runtime-cognito-identity"), None);
        assert_eq!(
            next.json::<Value>().await.unwrap(),
            json!({"hello": "world"})
        );

        assert_eq!(rt.request_ids(), vec![id.clone()]);
        assert_eq!(c.respond(&id, json!({"ok": true})).await.0, 202);
        assert_eq!(
            invoked.await.unwrap(),
            Invocation::Response(json!({"ok": true}))
        );
        // Already answered: the runtime is no longer in an invocation.
        let (status, body) = c.respond(&id, json!({"again": true})).await;
        assert_eq!(
            (status, body["errorType"].as_str()),
            (403, Some("InvalidStateTransition"))
        );
    }

    #[tokio::test]
    async fn an_answer_for_another_request_id_is_refused() {
        let rt = Arc::new(RuntimeApi::start().await);
        let c = Client::new(&rt);
        let first = spawn_invoke(&rt, json!(1));
        let old = header(&c.next().await, "lambda-runtime-aws-request-id").unwrap();
        c.respond(&old, json!("one")).await;
        first.await.unwrap();

        let second = spawn_invoke(&rt, json!(2));
        let id = header(&c.next().await, "lambda-runtime-aws-request-id").unwrap();
        for wrong in [old.as_str(), "8476a536-e9f4-11e8-9739-2dfe598c3fcd"] {
            let (status, body) = c.respond(wrong, json!("stale")).await;
            assert_eq!(status, 400);
            assert_eq!(body["errorType"], "InvalidRequestID");
        }
        assert_eq!(c.respond(&id, json!("two")).await.0, 202);
        assert_eq!(second.await.unwrap(), Invocation::Response(json!("two")));
    }

    #[tokio::test]
    async fn an_error_is_recorded_with_its_type_header() {
        let rt = Arc::new(RuntimeApi::start().await);
        let c = Client::new(&rt);
        let invoked = spawn_invoke(&rt, json!({}));
        let id = header(&c.next().await, "lambda-runtime-aws-request-id").unwrap();
        let path = format!("/2018-06-01/runtime/invocation/{id}/error");
        let body = json!({"errorType": "BrokerDown", "errorMessage": "no broker"});
        let (status, _) = c
            .post(
                &path,
                &[("Lambda-Runtime-Function-Error-Type", "unhandled")],
                body,
            )
            .await;
        assert_eq!(status, 202);
        assert_eq!(
            invoked.await.unwrap(),
            Invocation::Error {
                error_type: "BrokerDown".into(),
                message: "no broker".into()
            }
        );
        let errors = rt.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].request_id.as_deref(), Some(id.as_str()));
        assert_eq!(errors[0].function_error_type.as_deref(), Some("unhandled"));
    }

    #[tokio::test]
    async fn client_context_and_identity_are_sent_only_when_set() {
        let rt = Arc::new(RuntimeApi::start().await);
        let c = Client::new(&rt);
        let invoked = {
            let rt = rt.clone();
            tokio::spawn(async move {
                let options = InvokeOptions {
                    client_context: Some(r#"{"custom":{"a":"b"}}"#.into()),
                    cognito_identity: Some(r#"{"cognitoIdentityId":"x"}"#.into()),
                };
                rt.invoke_with(json!({}), options).await
            })
        };
        let next = c.next().await;
        assert_eq!(
            header(&next, "lambda-runtime-client-context").as_deref(),
            Some(r#"{"custom":{"a":"b"}}"#)
        );
        assert!(header(&next, "lambda-runtime-cognito-identity").is_some());
        let id = header(&next, "lambda-runtime-aws-request-id").unwrap();
        c.respond(&id, json!(null)).await;
        assert_eq!(invoked.await.unwrap(), Invocation::Response(Value::Null));
    }

    #[tokio::test]
    async fn an_init_error_answers_the_invocation_and_ends_the_runtime() {
        let rt = RuntimeApi::start().await;
        let c = Client::new(&rt);
        let body = json!({"errorType": "Runtime.InitError", "errorMessage": "no config"});
        let headers = [("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")];
        let (status, _) = c
            .post("/2018-06-01/runtime/init/error", &headers, body)
            .await;
        assert_eq!(status, 202);

        assert_eq!(
            rt.invoke(json!({})).await,
            Invocation::Error {
                error_type: "Runtime.InitError".into(),
                message: "no config".into()
            }
        );
        assert_eq!(c.next().await.status(), 403);
        assert!(rt.init_error().is_some());
    }

    #[tokio::test]
    async fn past_the_deadline_the_invocation_times_out_and_a_late_answer_is_refused() {
        let rt = Arc::new(RuntimeApi::start().await);
        rt.lambda_env("slow", Duration::from_millis(300));
        let c = Client::new(&rt);
        let invoked = spawn_invoke(&rt, json!({}));
        let id = header(&c.next().await, "lambda-runtime-aws-request-id").unwrap();
        assert_eq!(invoked.await.unwrap(), Invocation::TimedOut);
        assert_eq!(c.respond(&id, json!("late")).await.0, 403);
    }

    #[tokio::test]
    async fn extensions_register_during_init_and_hold_invocations_until_ready() {
        let rt = Arc::new(RuntimeApi::start().await);
        rt.lambda_env("fn-with-ext", Duration::from_secs(5));
        let c = Arc::new(Client::new(&rt));

        let nameless = c.register(None, &[]).await;
        assert_eq!(nameless.status(), 403);
        let internal_shutdown = c.register(Some("inner"), &["SHUTDOWN"]).await;
        assert_eq!(internal_shutdown.status(), 403);
        let body: Value = internal_shutdown.json().await.unwrap();
        assert_eq!(body["errorType"], "Extension.InvalidEventType");

        let registered = c.register(Some("inner"), &[]).await;
        assert_eq!(registered.status(), 200);
        let ext = header(&registered, "lambda-extension-identifier").unwrap();
        let body: Value = registered.json().await.unwrap();
        assert_eq!(body["functionName"], "fn-with-ext");

        // The extension has not called event/next yet: the invocation waits.
        let invoked = spawn_invoke(&rt, json!({}));
        let next = tokio::spawn({
            let c = c.clone();
            async move { c.next().await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !next.is_finished(),
            "invocation delivered before the extension was ready"
        );
        let ext_next = tokio::spawn({
            let c = c.clone();
            async move { c.extension_next(&ext).await }
        });
        let next = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("invocation once the extension is ready")
            .unwrap();
        let id = header(&next, "lambda-runtime-aws-request-id").unwrap();
        c.respond(&id, json!("done")).await;
        invoked.await.unwrap();
        // Subscribed to nothing: still waiting.
        assert!(!ext_next.is_finished());

        let late = c.register(Some("late"), &[]).await;
        assert_eq!(late.status(), 403);
        let body: Value = late.json().await.unwrap();
        assert_eq!(body["errorType"], "Extension.RegistrationClosed");
    }

    #[tokio::test]
    async fn shutdown_reaches_external_extensions_subscribed_to_it() {
        let rt = RuntimeApi::start_with_external_extensions(&["watcher"]).await;
        let c = Arc::new(Client::new(&rt));
        let registered = c.register(Some("watcher"), &["SHUTDOWN"]).await;
        assert_eq!(registered.status(), 200);
        let ext = header(&registered, "lambda-extension-identifier").unwrap();
        let event = tokio::spawn({
            let c = c.clone();
            async move { c.extension_next(&ext).await.json::<Value>().await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!event.is_finished());

        rt.shutdown().await;
        let event = event.await.unwrap();
        assert_eq!(event["eventType"], "SHUTDOWN");
        assert_eq!(event["shutdownReason"], "spindown");
    }
}
