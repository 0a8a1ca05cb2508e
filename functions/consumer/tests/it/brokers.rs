//! Two brokers in the broker registry, played by two virtual hosts of the local RabbitMQ (the
//! deployment's own `/` and one per test, created and deleted through the management API).
//! Each test has a database of its own, so the brokers it registers and the assignments it
//! checks see no other test's tenants.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use shared::{
    AppContext, Config,
    broker::{Broker, QueueRef, work_queue},
    domain::{MessageStatus, QueueName, TenantId, TenantName},
    error::Code,
    services::{
        brokers::{self, BrokerRequest},
        messages::{self, PublishItem},
        tenants,
    },
    testkit,
};

use crate::helpers::{FailTimes, configure, publish_many, start_event_source, wait_all};

/// A virtual host of the local RabbitMQ, with the test user's permissions on it.
struct Vhost {
    name: String,
    management: String,
    http: reqwest::Client,
}

impl Vhost {
    async fn create(config: &Config) -> Self {
        let v = Self {
            name: testkit::unique("msgsvc-test"),
            management: config
                .rabbitmq_management_url
                .clone()
                .expect("management API"),
            http: reqwest::Client::new(),
        };
        v.call(
            reqwest::Method::PUT,
            &format!("/api/vhosts/{}", v.name),
            None,
        )
        .await;
        v.call(
            reqwest::Method::PUT,
            &format!("/api/permissions/{}/guest", v.name),
            Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
        )
        .await;
        v
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<Value> {
        let mut url = reqwest::Url::parse(&self.management).unwrap();
        let (user, pass) = (url.username().to_string(), url.password().map(String::from));
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut req = self
            .http
            .request(
                method,
                format!("{}{}", url.as_str().trim_end_matches('/'), path),
            )
            .basic_auth(user, pass);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let resp = resp.error_for_status().unwrap();
        Some(resp.json().await.unwrap_or(Value::Null))
    }

    /// The management API's URL without credentials, as the registry takes it.
    fn management_url(&self) -> String {
        let mut url = reqwest::Url::parse(&self.management).unwrap();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.as_str().trim_end_matches('/').to_string()
    }

    fn amqp_url(&self, port: u16) -> String {
        format!("amqp://127.0.0.1:{port}/{}", self.name)
    }

    /// Names of the queues of `vhost` (`%2f` for the deployment's own).
    async fn queues_of(&self, vhost: &str) -> Vec<String> {
        let listed = self
            .call(
                reqwest::Method::GET,
                &format!("/api/queues/{vhost}?columns=name"),
                None,
            )
            .await
            .unwrap_or(Value::Null);
        listed
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q["name"].as_str().map(String::from))
            .collect()
    }

    async fn delete(&self) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/vhosts/{}", self.name),
            None,
        )
        .await;
    }
}

/// The consumer tests' settings on a database of the test's own.
async fn own_context(prefix: &str, tweak: impl FnOnce(&mut Config)) -> AppContext {
    let mut config = testkit::own_database(prefix).await;
    let fast = testkit::consumer_config();
    config.consumer = fast.consumer;
    tweak(&mut config);
    shared::observability::telemetry::init(&config);
    AppContext::new(config, "brokers-test").unwrap()
}

async fn register(ctx: &AppContext, id: &str, amqp_url: String, management: String, max: i64) {
    let req = BrokerRequest {
        amqp_url: Some(amqp_url),
        management_url: Some(management),
        max_queues: Some(max),
        ..BrokerRequest::default()
    };
    brokers::register(ctx, id, &req).await.unwrap();
}

async fn set_budget(ctx: &AppContext, id: &str, max_queues: i64) {
    let current = brokers::view(ctx, id, false).await.unwrap().broker;
    let req = BrokerRequest {
        amqp_url: current.amqp_url,
        management_url: current.management_url,
        max_queues: Some(max_queues),
        ..BrokerRequest::default()
    };
    brokers::update(ctx, id, &req).await.unwrap();
}

async fn new_tenant(ctx: &AppContext, broker: Option<&str>) -> shared::domain::Tenant {
    let name = TenantName::parse(&testkit::unique("tenant")).unwrap();
    tenants::create(ctx, &name, broker).await.unwrap()
}

fn queue(t: TenantId, name: &str) -> QueueRef {
    QueueRef::new(t, QueueName::parse(name).unwrap())
}

#[tokio::test]
async fn each_tenant_is_assigned_a_broker_and_all_its_traffic_stays_on_it() {
    let ctx = own_context("brokers", |_| {}).await;
    let vhost = Vhost::create(&ctx.config).await;
    register(
        &ctx,
        "second",
        vhost.amqp_url(5672),
        vhost.management_url(),
        10,
    )
    .await;
    // The home broker holds one queue at most: the next tenant goes to the one with room.
    set_budget(&ctx, "default", 1).await;
    let on_second = new_tenant(&ctx, None).await;
    let on_home = new_tenant(&ctx, Some("default")).await;
    assert_eq!(
        on_second.broker_id, "second",
        "the broker with the most room"
    );
    assert_eq!(on_home.broker_id, "default", "the broker an admin named");
    let (a, b) = (on_second.id, on_home.id);

    // Publish, consume, and retry once each (a retry goes through the broker's wait tier).
    configure(&ctx, a, "jobs", 2, 3, 100, None).await;
    let source = start_event_source(
        &ctx,
        Arc::new(FailTimes {
            n: 1,
            ..Default::default()
        }),
        vec![a, b],
    );
    let ids_a = publish_many(&ctx, a, "jobs", 5).await;
    let ids_b = publish_many(&ctx, b, "default", 5).await;
    wait_all(
        &ctx,
        a,
        &ids_a,
        MessageStatus::Completed,
        Duration::from_secs(30),
    )
    .await;
    wait_all(
        &ctx,
        b,
        &ids_b,
        MessageStatus::Completed,
        Duration::from_secs(30),
    )
    .await;
    for (t, id) in ids_a
        .iter()
        .map(|i| (a, i))
        .chain(ids_b.iter().map(|i| (b, i)))
    {
        let m = testkit::message(&ctx, t, *id).await;
        assert_eq!(m.attempts, 2, "one retry, then completed");
    }

    let on_vhost = vhost.queues_of(&vhost.name).await;
    let on_root = vhost.queues_of("%2f").await;
    let (qa, qb) = (
        work_queue(&queue(a, "jobs")),
        work_queue(&queue(b, "default")),
    );
    assert!(on_vhost.contains(&qa), "{on_vhost:?}");
    assert!(
        !on_root.contains(&qa),
        "the second broker's tenant left a queue on the home one"
    );
    assert!(on_root.contains(&qb));
    assert!(
        !on_vhost.contains(&qb),
        "the home broker's tenant left a queue on the second"
    );
    assert!(
        on_vhost.iter().any(|q| q.starts_with("msgsvc.wait.")),
        "retries wait on the tenant's own broker: {on_vhost:?}"
    );

    // The status page reads the depth of the tenant's queue on its own broker.
    let status = shared::services::consumers::status(&ctx, Some(a))
        .await
        .unwrap();
    let jobs = status.iter().find(|s| s.queue_name == "jobs").unwrap();
    assert!(jobs.broker.is_some(), "depth read from the second broker");

    // The registry counts what each broker holds, and refuses a queue past a budget.
    let listed = brokers::list(&ctx).await.unwrap();
    let second = listed.iter().find(|v| v.broker.id == "second").unwrap();
    assert_eq!((second.tenants, second.queues), (1, 2), "default and jobs");
    assert_eq!(second.vhost, vhost.name);
    set_budget(&ctx, "second", 2).await;
    let update = shared::domain::ConsumerConfigUpdate::parse(
        "more",
        1,
        None,
        None,
        Some(true),
        None,
        &ctx.config.consumer,
    )
    .unwrap();
    let refused = shared::services::consumers::configure(&ctx, a, &update).await;
    match refused {
        Err(e) => assert_eq!(e.code(), Code::BrokerBudgetExceeded, "{e}"),
        Ok(c) => panic!("a queue past the broker's budget was created: {c:?}"),
    }
    let stored = shared::db::consumer_configs::get(&ctx.db, a, "more")
        .await
        .unwrap();
    assert!(stored.is_none(), "nothing stored for the refused queue");
    // A publish to a new queue is refused the same way, and stores nothing.
    let item = PublishItem {
        queue_name: "other".into(),
        message_body: json!({}),
        headers: None,
        idempotency_key: None,
        ..Default::default()
    };
    let refused = messages::publish(&ctx, a, item).await;
    assert_eq!(
        refused.err().map(|e| e.code()),
        Some(Code::BrokerBudgetExceeded)
    );
    // With no accepting broker left with room, a new tenant is refused before anything is stored.
    let name = TenantName::parse(&testkit::unique("tenant")).unwrap();
    let refused = tenants::create(&ctx, &name, None).await;
    assert_eq!(
        refused.err().map(|e| e.code()),
        Some(Code::BrokerBudgetExceeded)
    );

    source.stop().await;
    ctx.brokers.close().await;
    vhost.delete().await;
    shared::db::drop_database(&ctx.config).await.unwrap();
}

#[tokio::test]
async fn one_broker_down_holds_back_only_its_tenants_and_the_relay_catches_them_up() {
    let ctx = own_context("brokers_down", |c| {
        c.relay.stale_after = Duration::ZERO;
    })
    .await;
    let vhost = Vhost::create(&ctx.config).await;
    // The second broker is reached through a proxy the test can cut.
    let proxy = testkit::TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
    register(
        &ctx,
        "second",
        vhost.amqp_url(proxy.addr.port()),
        vhost.management_url(),
        100,
    )
    .await;
    let a = new_tenant(&ctx, Some("second")).await.id;
    let b = new_tenant(&ctx, Some("default")).await.id;
    let publish = |t: TenantId| {
        let ctx = ctx.clone();
        async move {
            let item = PublishItem {
                queue_name: "jobs".into(),
                message_body: json!({"n": 1}),
                headers: None,
                idempotency_key: None,
                ..Default::default()
            };
            messages::publish(&ctx, t, item).await.unwrap()
        }
    };
    // Both brokers answer: both tenants' messages are queued.
    assert_eq!(publish(a).await.status, MessageStatus::Queued);
    assert_eq!(publish(b).await.status, MessageStatus::Queued);

    proxy.cut().await;
    let held = publish(a).await;
    assert_eq!(
        held.status,
        MessageStatus::Pending,
        "stored, not on its broker yet"
    );
    assert_eq!(
        publish(b).await.status,
        MessageStatus::Queued,
        "the other broker's tenants are not held back"
    );

    proxy.restore();
    // The relay puts the held message on its tenant's broker (after the reconnect backoff).
    let second = Broker::new(vhost.amqp_url(5672), "brokers-test-probe");
    let qa = work_queue(&queue(a, "jobs"));
    let mut ready = None;
    for _ in 0..50 {
        shared::outbox::relay::run_once(&ctx).await.unwrap();
        if testkit::message(&ctx, a, held.id).await.status == MessageStatus::Queued {
            ready = second.ready_count(&qa).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        ready,
        Some(2),
        "the first message and the relayed one, on the second broker"
    );
    let on_root = vhost.queues_of("%2f").await;
    assert!(
        !on_root.contains(&qa),
        "nothing of the second broker's tenant on the home one"
    );

    second.close().await;
    ctx.brokers.close().await;
    vhost.delete().await;
    shared::db::drop_database(&ctx.config).await.unwrap();
}

/// The consumer in Lambda mode (the binary behind the stand-in Runtime API) handed an `aws:rmq`
/// batch from the second broker (`"<queue>::<vhost>"`, as Amazon MQ keys it) parks its retry on
/// that broker's wait tier, from which it comes back to the tenant's work queue there.
#[tokio::test]
async fn lambda_retries_go_back_to_the_tenants_own_broker() {
    let ctx = own_context("brokers_lambda", |_| {}).await;
    let vhost = Vhost::create(&ctx.config).await;
    register(
        &ctx,
        "second",
        vhost.amqp_url(5672),
        vhost.management_url(),
        100,
    )
    .await;
    let a = new_tenant(&ctx, Some("second")).await.id;
    // Deliveries fail: the endpoint is a local port nothing listens on.
    let endpoint = format!("http://127.0.0.1:{}/hook", testkit::free_port());
    configure(&ctx, a, "jobs", 1, 3, 100, Some(endpoint)).await;
    let id = publish_many(&ctx, a, "jobs", 1).await[0];

    let second = Broker::new(vhost.amqp_url(5672), "brokers-test-probe");
    let q = queue(a, "jobs");
    let channel = second.channel().await.unwrap();
    let delivery = channel
        .basic_get(
            work_queue(&q).as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("the message is on the second broker")
        .delivery;
    let event = consumer::rmq::event_from_deliveries(&q, &vhost.name, &[delivery]);
    let f = crate::aws_fixtures::Function::start_with(
        &ctx,
        &[
            ("WEBHOOK_ALLOW_HTTP", "true"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ],
    )
    .await;
    let answer = f.invoke(serde_json::to_value(&event).unwrap()).await;
    assert_eq!(answer["queues"][0]["retried"], json!(1), "{answer}");
    assert_eq!(
        testkit::message(&ctx, a, id).await.status,
        MessageStatus::Retrying
    );

    // Back on the second broker's work queue after the retry delay.
    let mut ready = Some(0);
    for _ in 0..50 {
        ready = second.ready_count(&work_queue(&q)).await.unwrap();
        if ready == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, Some(1), "the retry came back on the tenant's broker");
    let on_root = vhost.queues_of("%2f").await;
    assert!(!on_root.contains(&work_queue(&q)));

    let _ = channel.close(200, "done".into()).await;
    second.close().await;
    ctx.brokers.close().await;
    vhost.delete().await;
    shared::db::drop_database(&ctx.config).await.unwrap();
}
