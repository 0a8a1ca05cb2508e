//! Signed HTTP delivery: POST the body to the queue's endpoint with Standard Webhooks headers.
//! 2xx completes; 5xx, 429 and timeouts retry (honouring `Retry-After`); other statuses and
//! refused addresses fail for good. The answer's status and the first bytes of its body are
//! kept with the attempt ([`super::excerpt`]).

use std::{net::IpAddr, time::Duration};

use reqwest::{
    StatusCode, Url,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT},
    redirect::Policy,
};

use super::{HttpResponse, Outcome, Processed, Processor, Task, address_guard, excerpt, signature};
use crate::{config::WebhookConfig, domain::headers};

const AGENT: &str = "msgsvc-webhook/1";

pub struct WebhookProcessor {
    client: reqwest::Client,
    allow_private: bool,
    allow_http: bool,
    excerpt_bytes: usize,
}

impl WebhookProcessor {
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            // A redirect could point anywhere, including inside the network.
            .redirect(Policy::none());
        if !config.allow_private {
            builder = builder.dns_resolver(address_guard::GuardedResolver);
        }
        Ok(Self {
            client: builder.build()?,
            allow_private: config.allow_private,
            allow_http: config.allow_http,
            excerpt_bytes: config.response_excerpt_bytes,
        })
    }

    fn check_url(&self, raw: &str) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|_| "endpoint_url is not a valid URL".to_string())?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err("endpoint_url must use https".into()),
        }
        // IP literals bypass the resolver, so check them here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !self.allow_private && !address_guard::is_public(ip)) {
            return Err(address_guard::Refused.to_string());
        }
        Ok(url)
    }
}

#[async_trait::async_trait]
impl Processor for WebhookProcessor {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        self.process_recorded(job).await.outcome
    }

    async fn process_recorded(&self, job: &Task<'_>) -> Processed {
        let Some(endpoint) = job.config.endpoint_url.as_deref() else {
            return Outcome::Completed.into();
        };
        let url = match self.check_url(endpoint) {
            Ok(u) => u,
            Err(error) => return Outcome::Fail { error }.into(),
        };
        let id = job.message_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let Some(sig) = signature::sign(&job.config.signing_secret, &id, timestamp, job.body)
        else {
            return Outcome::Fail {
                error: "the queue's signing secret is malformed".into(),
            }
            .into();
        };
        let name = HeaderName::from_static;
        let own = [
            (CONTENT_TYPE, "application/json".to_string()),
            (USER_AGENT, AGENT.to_string()),
            (name(signature::ID_HEADER), id),
            (name(signature::TIMESTAMP_HEADER), timestamp.to_string()),
            (name(signature::SIGNATURE_HEADER), sig),
            (name("x-msg-tenant-id"), job.tenant_id.to_string()),
            (name("x-msg-queue"), job.queue_name.to_string()),
            (name("x-msg-attempt"), job.attempt.to_string()),
        ];
        let headers = match request_headers(job, own) {
            Ok(h) => h,
            Err(error) => return Outcome::Fail { error }.into(),
        };
        let req = self.client.post(url).headers(headers);
        let outcome = match req.body(job.body.to_vec()).send().await {
            Ok(mut resp) => {
                let outcome = classify(resp.status(), retry_after(&resp));
                // Within the client's timeout, which covers the body too.
                let excerpt = excerpt::read(&mut resp, self.excerpt_bytes).await;
                return Processed {
                    outcome,
                    response: Some(HttpResponse {
                        status: resp.status().as_u16(),
                        excerpt,
                    }),
                };
            }
            Err(e) if is_refused(&e) => Outcome::Fail {
                error: address_guard::Refused.to_string(),
            },
            Err(e) if e.is_timeout() => Outcome::retry("endpoint timed out"),
            Err(e) => Outcome::retry(format!("endpoint unreachable: {}", root_cause(&e))),
        };
        outcome.into()
    }
}

/// The message's own headers less the reserved names (which messages stored before a name was
/// reserved may still carry), then the delivery's `own`, each replacing any value of its name:
/// a message can neither forge the signature nor steer the request's framing or routing.
fn request_headers(
    job: &Task<'_>,
    own: impl IntoIterator<Item = (HeaderName, String)>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let tenant = job.headers.iter().filter(|(n, _)| !headers::is_reserved(n));
    for (name, value) in tenant {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name {name:?} cannot be sent over HTTP"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header {name:?} has a value HTTP cannot carry"))?;
        map.append(name, value);
    }
    for (name, value) in own {
        let value = HeaderValue::try_from(value)
            .map_err(|_| format!("header {name:?} has a value HTTP cannot carry"))?;
        map.insert(name, value);
    }
    Ok(map)
}

fn classify(status: StatusCode, retry_after: Option<Duration>) -> Outcome {
    if status.is_success() {
        Outcome::Completed
    } else if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Outcome::Retry {
            error: format!("endpoint answered {status}"),
            retry_after,
        }
    } else {
        Outcome::Fail {
            error: format!("endpoint answered {status}"),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for webhooks and ignored).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

fn is_refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<address_guard::Refused>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify(StatusCode::NO_CONTENT, None), Outcome::Completed);
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, None),
            Outcome::Retry { .. }
        ));
        let ra = Some(Duration::from_secs(7));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, ra),
            Outcome::Retry {
                error: "endpoint answered 429 Too Many Requests".into(),
                retry_after: ra
            }
        );
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, None),
            Outcome::Fail { .. }
        ));
    }

    /// The head of one request to a local endpoint, which answers 204: its header lines,
    /// names in lower case.
    async fn delivered_headers(headers: &[(&str, &str)]) -> (Vec<(String, String)>, Outcome) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let endpoint = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = conn.read(&mut buf).await.unwrap();
                assert!(read > 0, "the request ended before its head");
                head.extend_from_slice(&buf[..read]);
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let processor = WebhookProcessor::new(&WebhookConfig {
            timeout: Duration::from_secs(5),
            allow_private: true,
            allow_http: true,
            response_excerpt_bytes: 1024,
        })
        .unwrap();
        let tenant_id = crate::domain::TenantId::generate();
        let now = chrono::Utc::now();
        let config = crate::domain::ConsumerConfig {
            tenant_id,
            queue_name: "orders".into(),
            workers: 1,
            retry_attempts: 0,
            retry_delay_ms: 1000,
            enabled: true,
            endpoint_url: Some(url),
            signing_secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            on_dead_letter: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let task = Task {
            message_id: crate::domain::MessageId::generate(),
            tenant_id,
            queue_name: "orders",
            body: b"{}",
            headers: &headers,
            attempt: 1,
            config: &config,
        };
        let outcome = processor.process(&task).await;
        let head = endpoint.await.unwrap();
        let lines = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        (lines, outcome)
    }

    /// A message's own headers never replace or double the delivery's, nor steer framing and
    /// routing: messages stored before these names were reserved carry them still.
    #[tokio::test]
    async fn the_delivery_sets_its_own_headers_last() {
        let (lines, outcome) = delivered_headers(&[
            ("webhook-signature", "v1,forged"),
            ("Webhook-Id", "msg_forged"),
            ("webhook-timestamp", "1"),
            ("Content-Type", "text/plain"),
            ("Host", "internal.example"),
            ("X-Msg-Queue", "other"),
            ("User-Agent", "forged/1"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "upgrade"),
            ("Upgrade", "websocket"),
            ("trace-id", "t-1"),
        ])
        .await;
        assert_eq!(outcome, Outcome::Completed);
        let values = |name: &str| -> Vec<&str> {
            lines
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        for name in [
            "webhook-signature",
            "webhook-id",
            "webhook-timestamp",
            "content-type",
            "host",
            "x-msg-queue",
            "user-agent",
        ] {
            assert_eq!(values(name).len(), 1, "{name}: {lines:?}");
        }
        assert_ne!(values("webhook-signature"), ["v1,forged"]);
        assert_ne!(values("webhook-id"), ["msg_forged"]);
        assert_eq!(values("content-type"), ["application/json"]);
        assert!(values("host")[0].starts_with("127.0.0.1:"), "{lines:?}");
        assert_eq!(values("x-msg-queue"), ["orders"]);
        assert_eq!(values("user-agent"), ["msgsvc-webhook/1"]);
        assert_eq!(values("content-length"), ["2"]);
        for name in ["transfer-encoding", "upgrade"] {
            assert!(values(name).is_empty(), "{name}: {lines:?}");
        }
        assert_eq!(values("trace-id"), ["t-1"]);
    }

    #[test]
    fn urls_are_checked_before_sending() {
        let strict = WebhookProcessor::new(&WebhookConfig {
            timeout: Duration::from_secs(1),
            allow_private: false,
            allow_http: false,
            response_excerpt_bytes: 1024,
        })
        .unwrap();
        assert!(strict.check_url("https://example.com/hook").is_ok());
        assert!(strict.check_url("http://example.com/hook").is_err());
        assert!(strict.check_url("https://127.0.0.1/hook").is_err());
        assert!(strict.check_url("https://[::1]/hook").is_err());
        assert!(strict.check_url("https://169.254.169.254/latest").is_err());
    }
}
