//! Signed HTTP delivery: POST the body to the queue's endpoint with Standard Webhooks headers.
//! 2xx completes; 5xx, 429 and timeouts retry (honouring `Retry-After`); other statuses and
//! refused addresses fail for good.

use std::{net::IpAddr, time::Duration};

use reqwest::{StatusCode, Url, header::RETRY_AFTER, redirect::Policy};

use super::{Outcome, Processor, Task, address_guard, signature};
use crate::config::WebhookConfig;

pub struct WebhookProcessor {
    client: reqwest::Client,
    allow_private: bool,
    allow_http: bool,
}

impl WebhookProcessor {
    pub fn new(config: &WebhookConfig) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            // A redirect could point anywhere, including inside the network.
            .redirect(Policy::none())
            .user_agent("msgsvc-webhook/1");
        if !config.allow_private {
            builder = builder.dns_resolver(address_guard::GuardedResolver);
        }
        Ok(Self {
            client: builder.build()?,
            allow_private: config.allow_private,
            allow_http: config.allow_http,
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
        let Some(endpoint) = job.config.endpoint_url.as_deref() else {
            return Outcome::Completed;
        };
        let url = match self.check_url(endpoint) {
            Ok(u) => u,
            Err(error) => return Outcome::Fail { error },
        };
        let id = job.message_id.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let Some(sig) = signature::sign(&job.config.signing_secret, &id, timestamp, job.body)
        else {
            return Outcome::Fail {
                error: "the queue's signing secret is malformed".into(),
            };
        };
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::ID_HEADER, &id)
            .header(signature::TIMESTAMP_HEADER, timestamp.to_string())
            .header(signature::SIGNATURE_HEADER, sig)
            .header("x-msg-tenant-id", job.tenant_id.to_string())
            .header("x-msg-queue", job.queue_name)
            .header("x-msg-attempt", job.attempt.to_string());
        for (k, v) in job.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.body(job.body.to_vec()).send().await {
            Ok(resp) => classify(resp.status(), retry_after(&resp)),
            Err(e) if is_refused(&e) => Outcome::Fail {
                error: address_guard::Refused.to_string(),
            },
            Err(e) if e.is_timeout() => Outcome::retry("endpoint timed out"),
            Err(e) => Outcome::retry(format!("endpoint unreachable: {}", root_cause(&e))),
        }
    }
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

    #[test]
    fn urls_are_checked_before_sending() {
        let strict = WebhookProcessor::new(&WebhookConfig {
            timeout: Duration::from_secs(1),
            allow_private: false,
            allow_http: false,
        })
        .unwrap();
        assert!(strict.check_url("https://example.com/hook").is_ok());
        assert!(strict.check_url("http://example.com/hook").is_err());
        assert!(strict.check_url("https://127.0.0.1/hook").is_err());
        assert!(strict.check_url("https://[::1]/hook").is_err());
        assert!(strict.check_url("https://169.254.169.254/latest").is_err());
    }
}
