//! The function binaries as processes: start, readiness, memory.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

/// Binaries of the same build profile as this one (`target/release` under `make bench`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let mut dir = exe.parent().expect("bin dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop(); // running as a test
    }
    dir.join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn spawn(name: &str, env: &[(&str, String)]) -> anyhow::Result<Child> {
    let mut cmd = Command::new(bin(name));
    cmd.env("LOG_LEVEL", "warn")
        .env("LOG_FORMAT", "json")
        .env("SERVER_HOST", "127.0.0.1")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok(cmd.spawn()?)
}

/// Polls `url` until it answers 2xx; returns how long that took from `since`.
pub async fn ready(url: &str, since: Instant, timeout: Duration) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()?;
    while since.elapsed() < timeout {
        let answered = client.get(url).send().await;
        if answered.is_ok_and(|r| r.status().is_success()) {
            return Ok(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    anyhow::bail!("{url} not ready within {timeout:?}")
}

/// (current RSS, peak RSS) in MiB, from /proc.
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub fn size_mib(name: &str) -> f64 {
    std::fs::metadata(bin(name))
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0)
}

/// The size of the deploy-profile build (`make build-deploy-profile`), when one exists.
pub fn deploy_size_mib(name: &str) -> Option<f64> {
    let path = bin(name).parent()?.parent()?.join("deploy").join(name);
    std::fs::metadata(path)
        .ok()
        .map(|m| m.len() as f64 / (1024.0 * 1024.0))
}
