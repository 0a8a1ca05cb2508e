//! Running the workspace's function binaries as real processes.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use tokio::process::{Child, Command};

/// The workspace root.
pub fn root() -> &'static Path {
    // tests/ -> the workspace root
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// A workspace binary of this build. The first call builds every binary of the workspace at
/// once (a no-op when they are fresh): one command, so one feature set, for every process a
/// system test starts, rather than a build per package with features resolved for that package
/// alone (each of those rebuilds most of the dependency graph).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(root())
            .args(["build", "--quiet", "--workspace", "--bins"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
    });
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    target.join("debug").join(name)
}

/// Starts a binary with the test database and the given environment.
pub fn spawn(bin: &str, db_url: &str, env: &[(&str, String)], stdout: Stdio) -> Child {
    let mut cmd = Command::new(self::bin(bin));
    cmd.env("DATABASE_URL", db_url)
        .env("LOG_LEVEL", "warn")
        .env("SERVER_HOST", "127.0.0.1")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdout(stdout)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"))
}

pub async fn wait_http(url: &str) {
    for _ in 0..300 {
        if reqwest::get(url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}
