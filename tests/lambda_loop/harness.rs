//! Runs the local Lambda loop's processes for one test: `cargo lambda watch` serving the three
//! functions, and the local triggers. Each runs in a process group of its own, ended when the
//! test ends (pass or panic), so no function process outlives its test.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use shared::{Config, testkit::free_port};
pub use system_tests::{bin, root};

pub fn localstack() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

pub fn test_config() -> Config {
    let mut config = shared::testkit::test_config();
    // The functions run in Lambda mode, which refuses the development secret.
    config.jwt_secret = shared::testkit::LAMBDA_JWT_SECRET.into();
    config
}

/// What every process of the loop reads: the test database, the broker, LocalStack (dummy
/// credentials) and the JWT secret the test mints tokens with.
pub fn base_env(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", config.database_url.clone()),
        ("RABBITMQ_URL", config.rabbitmq_url.clone()),
        ("JWT_SECRET", config.jwt_secret.clone()),
        ("AWS_ENDPOINT_URL", localstack()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
        ("WEBHOOK_ALLOW_HTTP", "true".into()),
        // The relay sweeps every tenant's pending messages: tests leave it to its own tests.
        ("RELAY_ENABLED", "false".into()),
        ("LOG_LEVEL", "info".into()),
        // The shared test database keeps every run's dedicated tenants (see test_config).
        (
            "LAMBDA_ACCOUNT_CONCURRENCY",
            config
                .control
                .account_concurrency
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ),
    ]
}

/// The directory holding cargo-lambda (installed by the script on first use).
fn cargo_lambda_dir() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("scripts/cargo-lambda.sh"))
            .arg("--bin-dir")
            .output()
            .expect("run scripts/cargo-lambda.sh");
        assert!(out.status.success(), "cannot install cargo-lambda: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

/// A process group; dropping it terminates the whole group.
pub struct Group {
    child: Child,
    pub log: PathBuf,
}

impl Group {
    pub fn spawn(name: &str, cmd: Command) -> Self {
        let log = std::env::temp_dir().join(format!(
            "{}.log",
            shared::testkit::unique(&format!("lambda-loop-{name}"))
        ));
        Self::spawn_logging_to(name, cmd, log)
    }

    /// Like [`Group::spawn`], appending to an existing log (the function processes write into
    /// the watch's log, as they would if cargo lambda watch had started them).
    pub fn spawn_logging_to(name: &str, mut cmd: Command, log: PathBuf) -> Self {
        use std::os::unix::process::CommandExt;
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // A process the test starts is outside Lambda unless the test says otherwise.
        if !cmd
            .get_envs()
            .any(|(k, v)| k == "AWS_LAMBDA_RUNTIME_API" && v.is_some())
        {
            cmd.env_remove("AWS_LAMBDA_RUNTIME_API");
        }
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        eprintln!("{name}: pid {}, log {}", child.id(), log.display());
        Self { child, log }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// `cargo lambda watch` serving the Lambda Runtime and Invoke APIs and its function router, with
/// one process of each function (api, consumer, provisioner) polling it, as Lambda runs them.
///
/// The functions are this build's binaries, started by the harness (`--only-lambda-apis`, each
/// with `AWS_LAMBDA_RUNTIME_API` at cargo lambda's `/.rt/<function>`), rather than built by cargo
/// lambda watch: it builds each function as its own package, so with features resolved for that
/// package alone, which rebuilt most of the dependency graph three times per test run. What
/// the tests exercise is the same: cargo lambda's runtime API, invoke API and router.
pub struct Watch {
    pub url: String,
    // Dropped first: the functions end before the runtime API they poll.
    _functions: Vec<Group>,
    pub group: Group,
    http: reqwest::Client,
}

pub const FUNCTIONS: [&str; 3] = ["api", "consumer", "provisioner"];

impl Watch {
    pub fn start(env: &[(&'static str, String)]) -> Self {
        let port = free_port();
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    cargo_lambda_dir(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address"])
            .args(["127.0.0.1", "--invoke-port", &port.to_string()])
            .envs(env.iter().map(|(k, v)| (k, v)));
        let mut group = Group::spawn("cargo-lambda-watch", cmd);
        // A runtime that cannot reach its API at start exits, so the API comes first.
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                group.is_running() && Instant::now() < deadline,
                "cargo lambda watch never listened:\n{}",
                group.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let functions = FUNCTIONS
            .iter()
            .map(|name| {
                let mut cmd = Command::new(bin(name));
                cmd.current_dir(root())
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .env(
                        "AWS_LAMBDA_RUNTIME_API",
                        format!("http://127.0.0.1:{port}/.rt/{name}"),
                    )
                    .env("AWS_LAMBDA_FUNCTION_NAME", name)
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096");
                Group::spawn_logging_to(name, cmd, group.log.clone())
            })
            .collect();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            _functions: functions,
            group,
            http: reqwest::Client::new(),
        }
    }

    /// Waits until the API function answers its health check through the watch router.
    pub async fn wait_for_api(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let health = self.http.get(format!("{}/health", self.url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                self.group.is_running(),
                "cargo lambda watch exited:\n{}",
                self.group.log_tail()
            );
            assert!(
                Instant::now() < deadline,
                "the API function never answered:\n{}",
                self.group.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Invokes a function through the Lambda Invoke API; the answer's body, and the
    /// `X-Amz-Function-Error` header when the function failed.
    pub async fn invoke(&self, function: &str, payload: &Value) -> (Value, Option<String>) {
        let resp = self
            .http
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.url
            ))
            .json(payload)
            .timeout(Duration::from_secs(900))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {function}: {e}"));
        assert!(
            resp.status().is_success(),
            "invoke {function}: {}",
            resp.status()
        );
        let error = resp
            .headers()
            .get("x-amz-function-error")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.bytes().await.unwrap();
        let value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{function} answered {:?}: {e}",
                String::from_utf8_lossy(&body)
            )
        });
        (value, error)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// A fixture event from ../shared/fixtures (copied into the consumer's tests).
pub fn fixture(name: &str) -> Value {
    let path = root().join("functions/consumer/tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}
