//! Queue depths from the RabbitMQ management HTTP API (also available on Amazon MQ): a page of
//! queues' ready and unacknowledged counts per request, filtered by name on the broker.

use reqwest::Url;
use serde::Deserialize;

use super::{QueueRef, parse_work_queue, topology::work_queue_pattern};
use crate::domain::TenantId;

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

#[derive(Deserialize)]
struct QueuePage {
    items: Vec<QueueInfo>,
    page_count: u32,
}

/// Queues the management API lists per page (its maximum is 500).
const PAGE_SIZE: u32 = 500;

/// Depths of the tenant work queues of `vhost`: of one tenant's only when `tenant` is given
/// (the broker filters by name, so a tenant's status page reads its own queues, not the
/// broker's whole list), page by page.
pub async fn queue_depths(
    client: &reqwest::Client,
    management_url: &str,
    vhost: &str,
    tenant: Option<TenantId>,
) -> anyhow::Result<Vec<QueueDepth>> {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pattern = work_queue_pattern(tenant);
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let query = format!(
            "page={page}&page_size={PAGE_SIZE}&name={}&use_regex=true\
             &columns=name,messages_ready,messages_unacknowledged",
            encode(&pattern)
        );
        let got: QueuePage = management_get(
            client,
            management_url,
            &format!("/api/queues/{}", encode(vhost)),
            Some(&query),
        )
        .await?;
        out.extend(got.items.into_iter().filter_map(|q| {
            Some(QueueDepth {
                queue: parse_work_queue(&q.name)?,
                ready: q.messages_ready,
                unacked: q.messages_unacknowledged,
            })
        }));
        if page >= got.page_count {
            return Ok(out);
        }
        page += 1;
    }
}
