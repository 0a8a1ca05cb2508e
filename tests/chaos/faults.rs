//! The faults, each injected with the service's own control command (or a signal, or the API)
//! and undone the same way. Each returns when it has been undone; the run measures recovery
//! from there.

use std::time::Duration;

use crate::{
    endpoint::Endpoint,
    system::{System, pg_version, run},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    BrokerRestart,
    BrokerConnectionCut,
    /// A memory alarm: the broker blocks publishers and stops confirming.
    BrokerAlarm,
    PostgresRestart,
    PostgresConnectionCut,
    ConsumerKill,
    ApiKill,
    ConsumerTerm,
    QueuePaused,
    TenantDeactivated,
    EndpointDown,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::BrokerRestart,
        Fault::BrokerConnectionCut,
        Fault::BrokerAlarm,
        Fault::PostgresRestart,
        Fault::PostgresConnectionCut,
        Fault::ConsumerKill,
        Fault::ApiKill,
        Fault::ConsumerTerm,
        Fault::QueuePaused,
        Fault::TenantDeactivated,
        Fault::EndpointDown,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Fault::BrokerRestart => "broker restart (rabbitmqctl stop_app/start_app)",
            Fault::BrokerConnectionCut => {
                "broker connections cut (rabbitmqctl close_all_connections)"
            }
            Fault::BrokerAlarm => {
                "broker memory alarm, publishers blocked (set_vm_memory_high_watermark)"
            }
            Fault::PostgresRestart => "PostgreSQL restart (pg_ctlcluster restart -m fast)",
            Fault::PostgresConnectionCut => "PostgreSQL connections cut (pg_terminate_backend)",
            Fault::ConsumerKill => "consumer SIGKILL mid-batch",
            Fault::ApiKill => "API SIGKILL mid-request",
            Fault::ConsumerTerm => "consumer SIGTERM under load",
            Fault::QueuePaused => "queue paused and resumed (workers 0, then 2)",
            Fault::TenantDeactivated => "tenant deactivated mid-flight (DELETE)",
            Fault::EndpointDown => "webhook endpoint down longer than the retry budget",
        }
    }

    /// What the fault takes down, so overlapping faults hit different things.
    pub fn target(&self) -> &'static str {
        match self {
            Fault::BrokerRestart | Fault::BrokerConnectionCut | Fault::BrokerAlarm => "broker",
            Fault::PostgresRestart | Fault::PostgresConnectionCut => "postgres",
            Fault::ConsumerKill | Fault::ConsumerTerm => "consumer",
            Fault::ApiKill => "api",
            Fault::QueuePaused | Fault::TenantDeactivated | Fault::EndpointDown => "tenant",
        }
    }
}

/// What the faults act on besides the services.
pub struct Targets {
    pub paused_queue: String,
    pub doomed_tenant: String,
    pub endpoint: Endpoint,
}

pub async fn inject(fault: Fault, sys: &tokio::sync::Mutex<System>, t: &Targets) {
    match fault {
        Fault::BrokerRestart => {
            run("rabbitmqctl", &["stop_app"]).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            run("rabbitmqctl", &["start_app"]).await;
        }
        Fault::BrokerConnectionCut => {
            run("rabbitmqctl", &["close_all_connections", "chaos"]).await;
        }
        Fault::BrokerAlarm => {
            run(
                "rabbitmqctl",
                &["set_vm_memory_high_watermark", "absolute", "1MB"],
            )
            .await;
            tokio::time::sleep(Duration::from_secs(6)).await;
            run("rabbitmqctl", &["set_vm_memory_high_watermark", "0.4"]).await;
        }
        Fault::PostgresRestart => {
            let v = pg_version();
            run(
                "pg_ctlcluster",
                &[
                    "--skip-systemctl-redirect",
                    &v,
                    "main",
                    "restart",
                    "-m",
                    "fast",
                ],
            )
            .await;
        }
        Fault::PostgresConnectionCut => {
            run(
                "psql",
                &[
                    "-q",
                    "postgres://postgres@127.0.0.1:5432/postgres",
                    "-c",
                    &format!(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE datname = '{}' AND pid <> pg_backend_pid()",
                        crate::system::DATABASE
                    ),
                ],
            )
            .await;
        }
        Fault::ConsumerKill | Fault::ConsumerTerm => {
            let signal = if fault == Fault::ConsumerKill {
                "KILL"
            } else {
                "TERM"
            };
            let mut s = sys.lock().await;
            System::signal(&mut s.consumer, signal).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.start_consumer();
        }
        Fault::ApiKill => {
            let mut s = sys.lock().await;
            System::signal(&mut s.api, "KILL").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            s.start_api().await;
        }
        Fault::QueuePaused => {
            let (http, base, admin) = {
                let s = sys.lock().await;
                (s.http.clone(), s.base.clone(), s.admin.clone())
            };
            let config = |workers: u32| {
                let (http, url, admin) = (
                    http.clone(),
                    format!("{base}/api/v1/tenants/{}/config", t.paused_queue),
                    admin.clone(),
                );
                async move {
                    // The API may be restarting under an overlapping fault: retry until it answers.
                    for _ in 0..120 {
                        let r = http
                            .put(&url)
                            .bearer_auth(&admin)
                            .json(&serde_json::json!({ "workers": workers }))
                            .send()
                            .await;
                        if r.is_ok_and(|r| r.status().is_success()) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    panic!("could not set workers {workers} on {url}");
                }
            };
            config(0).await;
            tokio::time::sleep(Duration::from_secs(6)).await;
            config(2).await;
        }
        Fault::TenantDeactivated => {
            let (http, base, admin) = {
                let s = sys.lock().await;
                (s.http.clone(), s.base.clone(), s.admin.clone())
            };
            for _ in 0..120 {
                let r = http
                    .delete(format!("{base}/api/v1/tenants/{}", t.doomed_tenant))
                    .bearer_auth(&admin)
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Fault::EndpointDown => {
            t.endpoint.go_down(Duration::from_secs(8));
            tokio::time::sleep(Duration::from_secs(8)).await;
        }
    }
}

/// Puts every service back up and its settings back, whatever the run did.
pub async fn restore_services() {
    run("rabbitmqctl", &["set_vm_memory_high_watermark", "0.4"]).await;
    run("rabbitmqctl", &["start_app"]).await;
    run("scripts/services.sh", &[]).await;
}
