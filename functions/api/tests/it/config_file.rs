//! The API binary configured by a configuration file in the seed's shape (`--config`), with the
//! environment overriding it: it serves on the file's address, reaches the file's database and
//! broker, and takes the file's metrics path.

use std::{process::Stdio, time::Duration};

use reqwest::StatusCode;
use shared::testkit::{free_port, prepare_database, test_config};
use tokio::process::{Child, Command};

/// The seed's sections, pointed at this machine's services and the test database.
fn seed_shaped_file(port: u16) -> String {
    let config = test_config();
    let db = reqwest::Url::parse(&config.database_url).unwrap();
    let mq = reqwest::Url::parse(&config.rabbitmq_url).unwrap();
    format!(
        "server:\n  port: {port}\n  host: \"127.0.0.1\"\n\
         database:\n  host: \"{}\"\n  port: {}\n  user: \"{}\"\n  password: \"{}\"\n  dbname: \"{}\"\n\
         rabbitmq:\n  host: \"{}\"\n  port: {}\n  user: \"{}\"\n  password: \"{}\"\n\
         consumer:\n  default_workers: 3\n  max_workers: 10\n  retry_attempts: 3\n  retry_delay: 5s\n\
         metrics:\n  enabled: true\n  path: \"/seed-metrics\"\n\
         # The test database is shared: no relay sweeping other tests' messages.\n\
         relay:\n  enabled: false\n",
        db.host_str().unwrap(),
        db.port().unwrap_or(5432),
        db.username(),
        db.password().unwrap_or(""),
        db.path().trim_start_matches('/'),
        mq.host_str().unwrap(),
        mq.port().unwrap_or(5672),
        mq.username(),
        mq.password().unwrap_or(""),
    )
}

fn spawn(file: &std::path::Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("--config")
        .arg(file)
        // Nothing from the test's own environment: the file is the configuration.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_LEVEL", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the api binary")
}

/// The status of GET `path` once the server answers (up to 20 s), or `None`.
async fn get(port: u16, path: &str) -> Option<StatusCode> {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
        {
            return Some(r.status());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn the_api_runs_from_a_seed_shaped_file_and_the_environment_overrides_it() {
    prepare_database(&test_config()).await;
    let (file_port, env_port) = (free_port(), free_port());
    let path = std::env::temp_dir().join(format!(
        "msgsvc-seed-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, seed_shaped_file(file_port)).unwrap();

    let mut from_file = spawn(&path, &[]);
    assert_eq!(
        get(file_port, "/health").await,
        Some(StatusCode::OK),
        "database and broker from the file"
    );
    assert_eq!(
        get(file_port, "/seed-metrics").await,
        Some(StatusCode::OK),
        "the file's metrics path"
    );
    from_file.kill().await.unwrap();

    let port = env_port.to_string();
    let mut overridden = spawn(&path, &[("SERVER_PORT", &port)]);
    assert_eq!(
        get(env_port, "/health").await,
        Some(StatusCode::OK),
        "the variable's port"
    );
    overridden.kill().await.unwrap();
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_file_with_an_unknown_key_stops_the_start_with_its_name() {
    let path = std::env::temp_dir().join(format!(
        "msgsvc-typo-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, "server:\n  prot: 8080\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_api"))
        .arg("--config")
        .arg(&path)
        .env_clear()
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.prot"), "{stderr}");
}
