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
    shared::testkit::test_config()
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
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        use std::os::unix::process::CommandExt;
        let log = std::env::temp_dir().join(format!(
            "{}.log",
            shared::testkit::unique(&format!("lambda-loop-{name}"))
        ));
        let file = File::create(&log).unwrap();
        cmd.process_group(0)
            .env_remove("AWS_LAMBDA_RUNTIME_API")
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

/// `cargo lambda watch` serving api, consumer and provisioner on a port of its own.
pub struct Watch {
    pub url: String,
    pub group: Group,
    http: reqwest::Client,
}

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
            .args(["lambda", "watch", "--ignore-changes", "--invoke-address"])
            .args(["127.0.0.1", "--invoke-port", &port.to_string()])
            .args(["--concurrency", "4"])
            .envs(env.iter().map(|(k, v)| (k, v)));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            group: Group::spawn("cargo-lambda-watch", cmd),
            http: reqwest::Client::new(),
        }
    }

    /// Waits until the API function answers its health check through the watch router. The
    /// first request builds the function, which can take minutes on a cold target directory.
    pub async fn wait_for_api(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(900);
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
