//! A synchronous call of a function through the Lambda Invoke API, for the local triggers that
//! play AWS's event sources outside AWS (`cargo lambda watch` serves the API on port 9000).

use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct Invoker {
    client: reqwest::Client,
    url: String,
    function: String,
}

impl Invoker {
    /// Waits up to 15 minutes for an answer, Lambda's longest timeout.
    pub fn new(endpoint: &str, function: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(900))
                .build()?,
            url: format!(
                "{}/2015-03-31/functions/{function}/invocations",
                endpoint.trim_end_matches('/')
            ),
            function: function.to_string(),
        })
    }

    /// The function's answer; an error when the call fails or the function reports one
    /// (`X-Amz-Function-Error`), so the caller's event source retries as AWS's would.
    pub async fn invoke(&self, payload: &impl Serialize) -> anyhow::Result<Vec<u8>> {
        let resp = self.client.post(&self.url).json(payload).send().await?;
        let function_error = resp.headers().get("x-amz-function-error").cloned();
        let status = resp.status();
        let body = resp.bytes().await?.to_vec();
        if !status.is_success() || function_error.is_some() {
            bail!(
                "invoking {} failed ({status}): {}",
                self.function,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}
