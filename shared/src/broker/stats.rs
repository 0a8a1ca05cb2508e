//! Queue depths from the RabbitMQ management HTTP API (also available on Amazon MQ): one
//! request returns every queue's ready and unacknowledged counts.

use reqwest::Url;
use serde::Deserialize;

use super::{QueueRef, parse_work_queue};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    pub queue: QueueRef,
    pub ready: u64,
    pub unacked: u64,
}

#[derive(Deserialize)]
struct QueueInfo {
    name: String,
    #[serde(default)]
    messages_ready: u64,
    #[serde(default)]
    messages_unacknowledged: u64,
}

/// GETs a management API path (`/api/...`, with query) as JSON. `management_url` may carry
/// credentials (`http://user:pass@host:15672`).
pub async fn management_get<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    management_url: &str,
    path: &str,
    query: Option<&str>,
) -> anyhow::Result<T> {
    let mut url = Url::parse(management_url)?;
    let (user, pass) = (
        url.username().to_string(),
        url.password().map(str::to_string),
    );
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_path(path);
    url.set_query(query);
    let mut req = client.get(url);
    if !user.is_empty() {
        req = req.basic_auth(user, pass);
    }
    Ok(req.send().await?.error_for_status()?.json().await?)
}

/// Messages of one queue of `vhost` delivered and not yet acknowledged, as the management API
/// last sampled them (every few seconds).
pub async fn unacked(
    client: &reqwest::Client,
    management_url: &str,
    vhost: &str,
    queue: &str,
) -> anyhow::Result<u64> {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let info: QueueInfo = management_get(
        client,
        management_url,
        &format!("/api/queues/{}/{}", encode(vhost), encode(queue)),
        Some("columns=name,messages_ready,messages_unacknowledged"),
    )
    .await?;
    Ok(info.messages_unacknowledged)
}

/// Depths of every tenant work queue.
pub async fn queue_depths(
    client: &reqwest::Client,
    management_url: &str,
) -> anyhow::Result<Vec<QueueDepth>> {
    let queues: Vec<QueueInfo> = management_get(
        client,
        management_url,
        "/api/queues",
        Some("columns=name,messages_ready,messages_unacknowledged"),
    )
    .await?;
    Ok(queues
        .into_iter()
        .filter_map(|q| {
            Some(QueueDepth {
                queue: parse_work_queue(&q.name)?,
                ready: q.messages_ready,
                unacked: q.messages_unacknowledged,
            })
        })
        .collect())
}
