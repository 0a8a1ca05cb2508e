//! Function start: time from starting a binary to ready, its memory, and its size.
//! Ready is the first request served (local API), the metrics endpoint answering (local
//! consumer), or the first `next` call to the Lambda Runtime API (Lambda mode, after the
//! database and broker connections are opened in the init phase).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use serde::Serialize;
use tokio::sync::Notify;

use crate::processes::{self, free_port};

#[derive(Debug, Serialize)]
pub struct Start {
    pub binary: String,
    pub mode: String,
    pub ready_ms: f64,
    pub idle_rss_mib: f64,
    pub peak_rss_mib: f64,
    pub size_mib: f64,
    /// The deploy profile's binary (what ships to Lambda), when built.
    pub deploy_size_mib: Option<f64>,
}

async fn measure(
    binary: &str,
    mode: &str,
    ready: impl std::future::Future<Output = anyhow::Result<Duration>>,
    child: tokio::process::Child,
) -> anyhow::Result<Start> {
    let took = ready.await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = child.id().unwrap_or_default();
    let (idle, peak) = processes::memory_mib(pid).unwrap_or_default();
    drop(child);
    Ok(Start {
        binary: binary.into(),
        mode: mode.into(),
        ready_ms: took.as_secs_f64() * 1000.0,
        idle_rss_mib: idle,
        peak_rss_mib: peak,
        size_mib: processes::size_mib(binary),
        deploy_size_mib: processes::deploy_size_mib(binary),
    })
}

pub async fn local(binary: &str, database_url: &str) -> anyhow::Result<Start> {
    let port = free_port();
    let (port_var, url) = match binary {
        "api" => ("SERVER_PORT", format!("http://127.0.0.1:{port}/health")),
        _ => (
            "CONSUMER_METRICS_PORT",
            format!("http://127.0.0.1:{port}/metrics"),
        ),
    };
    let env = vec![
        ("DATABASE_URL", database_url.to_string()),
        (port_var, port.to_string()),
        ("CONSUMER_TENANTS", uuid::Uuid::nil().to_string()),
    ];
    let started = Instant::now();
    let child = processes::spawn(binary, &env)?;
    let ready = processes::ready(&url, started, Duration::from_secs(30));
    measure(binary, "local", ready, child).await
}

/// Lambda mode against a stand-in Runtime API that never hands out an event.
pub async fn lambda(binary: &str, database_url: &str) -> anyhow::Result<Start> {
    let called = Arc::new(Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let notify = called.clone();
    let app = Router::new().route(
        "/2018-06-01/runtime/invocation/next",
        get(move || {
            let notify = notify.clone();
            async move {
                notify.notify_one();
                std::future::pending::<()>().await;
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let env = vec![
        ("DATABASE_URL", database_url.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", binary.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{binary}")),
    ];
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(processes::bin(binary));
    cmd.env("AWS_LAMBDA_RUNTIME_API", &addr)
        // Inside Lambda the development default is refused.
        .env("JWT_SECRET", "bench-startup-secret")
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    let ready = async {
        tokio::time::timeout(Duration::from_secs(30), called.notified()).await?;
        Ok(started.elapsed())
    };
    let result = measure(binary, "lambda", ready, child).await;
    server.abort();
    result
}
