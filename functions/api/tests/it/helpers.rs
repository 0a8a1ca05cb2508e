use std::time::Duration;

use lapin::options::BasicGetOptions;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::{
    AppContext, Config,
    auth::{Authenticator, Claims},
    broker::{QueueRef, work_queue},
    domain::{QueueName, TenantId},
    testkit,
};

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub ctx: AppContext,
    auth: Authenticator,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts the API's Router on a random port, with `tweak` applied to the test configuration.
pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = testkit::test_config();
    // The database is created and migrated through the real URL even if `tweak` breaks it.
    testkit::prepare_database(&config).await;
    shared::observability::telemetry::init(&config);
    tweak(&mut config);
    let ctx = AppContext::new(config, "api-test").expect("context");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(api::ApiState::new(ctx.clone()));
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    let auth = Authenticator::hs256(&ctx.config.jwt_secret);
    let admin = auth.mint(&Claims::admin("test-admin", 600)).unwrap();
    TestApp {
        base,
        http: reqwest::Client::new(),
        admin,
        ctx,
        auth,
        server,
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The error code of an error response; panics on any other shape.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.body))
    }
}

impl TestApp {
    pub fn tenant_token(&self, tenant: &str) -> String {
        self.auth
            .mint(&Claims::tenant(tenant.parse::<TenantId>().unwrap(), 600))
            .unwrap()
    }

    pub fn mint(&self, claims: &Claims) -> String {
        self.auth.mint(claims).unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates a tenant; returns its id.
    pub async fn create_tenant(&self) -> String {
        let r = self
            .post(
                "/api/v1/tenants",
                &self.admin,
                json!({ "name": testkit::unique("tenant") }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    pub async fn publish(&self, tenant: &str, queue: &str, body: Value) -> Resp {
        self.post(
            &format!("/api/v1/tenants/{tenant}/messages"),
            &self.admin,
            json!({ "queue_name": queue, "message_body": body }),
        )
        .await
    }

    /// Takes one message off the tenant queue's work queue, if any.
    pub async fn broker_get(
        &self,
        tenant: &str,
        queue: &str,
    ) -> Option<lapin::message::BasicGetMessage> {
        let q = QueueRef::new(tenant.parse().unwrap(), QueueName::parse(queue).unwrap());
        let conn = lapin::Connection::connect(&rabbitmq_url(), Default::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        // Publisher confirms mean it is there; a short wait covers quorum queue bookkeeping.
        for _ in 0..20 {
            let got = ch
                .basic_get(work_queue(&q).into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap();
            if got.is_some() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

pub fn rabbitmq_url() -> String {
    testkit::test_config().rabbitmq_url
}

pub fn header_str(msg: &lapin::message::BasicGetMessage, name: &str) -> Option<String> {
    let headers = msg.delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        lapin::types::AMQPValue::LongString(s) => {
            Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        _ => None,
    }
}
