//! The system under test: its own database, the API and consumer binaries as processes, and
//! the services' own control commands for the faults.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use shared::{
    auth::{Authenticator, Claims},
    testkit::free_port,
};
use system_tests::processes::{bin, root};
use tokio::process::{Child, Command};

pub const DATABASE: &str = "msgsvc_chaos";

pub struct System {
    pub db_url: String,
    pub base: String,
    port: u16,
    metrics_port: u16,
    secret: String,
    pub admin: String,
    pub api: Option<Child>,
    pub consumer: Option<Child>,
    pub http: reqwest::Client,
    log_dir: std::path::PathBuf,
}

impl System {
    /// A fresh database and both processes started.
    pub async fn start(log_dir: std::path::PathBuf) -> Self {
        let maintenance = "postgres://postgres@127.0.0.1:5432/postgres";
        run(
            "psql",
            &[
                "-q",
                maintenance,
                "-c",
                &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
            ],
        )
        .await;
        std::fs::create_dir_all(&log_dir).unwrap();
        let secret = format!("chaos-{}", uuid::Uuid::new_v4());
        let port = free_port();
        let admin = Authenticator::hs256(&secret)
            .mint(&Claims::admin("chaos", 24 * 3600))
            .unwrap();
        let mut s = Self {
            db_url: format!("postgres://postgres@127.0.0.1:5432/{DATABASE}"),
            base: format!("http://127.0.0.1:{port}"),
            port,
            metrics_port: free_port(),
            secret,
            admin,
            api: None,
            consumer: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            log_dir,
        };
        s.start_api().await;
        s.start_consumer();
        s
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.db_url.clone()),
            ("JWT_SECRET", self.secret.clone()),
            ("LOG_LEVEL", "warn".into()),
            ("LOG_FORMAT", "json".into()),
            ("SERVER_HOST", "127.0.0.1".into()),
            ("SERVER_PORT", self.port.to_string()),
            ("CONSUMER_METRICS_PORT", self.metrics_port.to_string()),
            ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
            ("WEBHOOK_ALLOW_HTTP", "true".into()),
            ("WEBHOOK_TIMEOUT", "2s".into()),
            ("CONSUMER_PROCESSING_TIMEOUT", "5s".into()),
            ("CONSUMER_FUNCTION_TIMEOUT", "60s".into()),
            ("CONSUMER_CONFIG_POLL_INTERVAL", "500ms".into()),
            ("RELAY_INTERVAL", "1s".into()),
            ("RELAY_STALE_AFTER", "3s".into()),
            ("RELAY_LOST_AFTER", "20s".into()),
            ("RELAY_PUBLISH_TIMEOUT", "5s".into()),
        ]
    }

    fn spawn(&self, name: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{name}.log")))
            .unwrap();
        let mut cmd = Command::new(bin(name));
        cmd.env_remove("AWS_LAMBDA_RUNTIME_API")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"))
    }

    pub async fn start_api(&mut self) {
        self.api = Some(self.spawn("api"));
        self.wait_healthy(Duration::from_secs(120)).await;
    }

    pub fn start_consumer(&mut self) {
        self.consumer = Some(self.spawn("consumer"));
    }

    /// Waits until `/health` answers 200 (database and broker reachable); returns how long.
    pub async fn wait_healthy(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            let ok = self
                .http
                .get(format!("{}/health", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the API was not healthy within {limit:?}");
    }

    pub async fn signal(child: &mut Option<Child>, signal: &str) {
        if let Some(c) = child.as_mut()
            && let Some(pid) = c.id()
        {
            run("kill", &[&format!("-{signal}"), &pid.to_string()]).await;
            let _ = tokio::time::timeout(Duration::from_secs(60), c.wait()).await;
        }
        *child = None;
    }

    pub fn pid(child: &Option<Child>) -> Option<u32> {
        child.as_ref().and_then(|c| c.id())
    }

    pub async fn stop(&mut self) {
        Self::signal(&mut self.consumer, "TERM").await;
        Self::signal(&mut self.api, "TERM").await;
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.db_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

/// Runs a service control command; its failure is reported, not fatal (a fault may overlap
/// another that already took the service down).
pub async fn run(program: &str, args: &[&str]) -> bool {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    if !out.status.success() {
        eprintln!(
            "chaos: `{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

/// The PostgreSQL cluster's version, for `pg_ctlcluster`.
pub fn pg_version() -> String {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| "15".into())
}
