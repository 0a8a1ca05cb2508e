//! What the local event source holds on the broker, seen through the RabbitMQ management API:
//! its mappings spread over connections of a bounded number of channels, and a queue that may
//! not run holds no consumer (so no prefetched messages).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use consumer::local::{dispatch::Dispatcher, event_source::Options};
use serde_json::Value;
use shared::{
    AppContext,
    broker::{QueueRef, stats::management_get, work_queue},
    delivery::BatchHandler,
    domain::{MessageStatus, QueueName, TenantId},
};

use crate::helpers::{
    FailTimes, configure, context, message, publish_many, start_dispatching, start_event_source,
    tenant, wait_all,
};

async fn management(ctx: &AppContext, path: &str, query: Option<&str>) -> Value {
    let url = ctx.config.rabbitmq_management_url.as_deref().unwrap();
    management_get(&ctx.http, url, path, query)
        .await
        .expect("RabbitMQ management API")
}

fn queue_name(t: TenantId, queue: &str) -> String {
    work_queue(&QueueRef::new(t, QueueName::parse(queue).unwrap()))
}

/// Polls `probe` until it returns `Some`, for up to 20 s (the management API's statistics lag
/// by up to its collection interval, 5 s by default); panics with the last value seen.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => panic!("{what}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// More queues than fit one connection's bound: every queue is consumed, over as many
/// connections as the bound needs, none carrying more channels than it.
#[tokio::test]
async fn mappings_spread_over_connections_of_bounded_channels() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let queues: Vec<String> = (1..=7).map(|i| format!("spread-{i}")).collect();
    for q in &queues {
        configure(&ctx, t, q, 1, 0, 100, None).await;
    }
    // Only the test's queues run: the tenant's default queue is paused.
    configure(&ctx, t, "default", 0, 0, 100, None).await;
    let mut opts = Options::from_config(&ctx.config);
    opts.tenants = vec![t];
    opts.channels_per_connection = 3;
    let handler = BatchHandler::new(ctx.clone(), Arc::new(FailTimes::default()));
    let source = start_dispatching(&ctx, Dispatcher::InProcess(Arc::new(handler)), opts);

    let mut ids = Vec::new();
    for q in &queues {
        ids.extend(publish_many(&ctx, t, q, 2).await);
    }
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;

    let names: HashSet<String> = queues.iter().map(|q| queue_name(t, q)).collect();
    // Consumers of the test's queues, by the connection their channel is on.
    let per_connection = eventually("one consumer per queue", async || {
        let consumers = management(&ctx, "/api/consumers", None).await;
        let mut by_connection: HashMap<String, HashSet<String>> = HashMap::new();
        let mut consumed = HashSet::new();
        for c in consumers.as_array().unwrap() {
            let queue = c["queue"]["name"].as_str().unwrap_or_default();
            if names.contains(queue) {
                // A channel the statistics do not know yet has no details: look again.
                let details = &c["channel_details"];
                let (Some(connection), Some(channel)) = (
                    details["connection_name"].as_str(),
                    details["name"].as_str(),
                ) else {
                    return Err(format!("{queue}'s channel details pending: {c}"));
                };
                consumed.insert(queue.to_string());
                by_connection
                    .entry(connection.to_string())
                    .or_default()
                    .insert(channel.to_string());
            }
        }
        if consumed == names {
            Ok(by_connection)
        } else {
            Err(format!("{} of 7 queues consumed", consumed.len()))
        }
    })
    .await;
    let channels: Vec<usize> = per_connection.values().map(HashSet::len).collect();
    assert_eq!(
        channels.iter().sum::<usize>(),
        7,
        "one channel per queue: {per_connection:?}"
    );
    assert_eq!(
        per_connection.len(),
        3,
        "7 queues at 3 per connection take 3 connections: {per_connection:?}"
    );
    // The connections carry nothing else: their whole channel count stays within the bound.
    let connections = management(&ctx, "/api/connections", Some("columns=name,channels")).await;
    for c in connections.as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if per_connection.contains_key(name) {
            let open = c["channels"].as_u64().unwrap_or_default();
            assert!(open <= 3, "{name} has {open} channels open, over the bound");
        }
    }
    source.stop().await;
}

/// A tenant at capacity 0 (its function throttled) holds no consumer: its messages wait on the
/// queue, not prefetched in the event source, until the capacity is raised. A paused queue
/// holds none either.
#[tokio::test]
async fn a_tenant_at_capacity_zero_holds_no_consumer_until_raised() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    configure(&ctx, t, "held", 1, 0, 100, None).await;
    configure(&ctx, t, "default", 0, 0, 100, None).await;
    shared::db::control_state::set_desired(&ctx.db, t, Some(0))
        .await
        .unwrap();
    let ids = publish_many(&ctx, t, "held", 3).await;
    let source = start_event_source(&ctx, Arc::new(FailTimes::default()), vec![t]);
    // A few poll intervals: time enough for a consumer to start, were one started.
    tokio::time::sleep(ctx.config.consumer.config_poll_interval * 5).await;

    let path = |q: &str| format!("/api/queues/%2f/{}", queue_name(t, q));
    let held = path("held");
    eventually(
        "the queue at capacity 0 keeps its messages ready",
        async || {
            let q = management(&ctx, &held, None).await;
            match (
                &q["consumers"],
                &q["messages_ready"],
                &q["messages_unacknowledged"],
            ) {
                (c, r, u) if c == 0 && r == 3 && u == 0 => Ok(()),
                (c, r, u) => Err(format!("consumers {c}, ready {r}, unacked {u}")),
            }
        },
    )
    .await;
    let paused = management(&ctx, &path("default"), None).await;
    assert_eq!(paused["consumers"], 0, "a paused queue: {paused}");
    for id in &ids {
        let m = message(&ctx, t, *id).await;
        assert_eq!(m.status, MessageStatus::Queued, "{m:?}");
    }

    shared::db::control_state::set_desired(&ctx.db, t, Some(1))
        .await
        .unwrap();
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    eventually("raised, the queue has its consumer", async || {
        let q = management(&ctx, &held, None).await;
        if q["consumers"] == 1 {
            Ok(())
        } else {
            Err(format!("consumers {}", q["consumers"]))
        }
    })
    .await;
    source.stop().await;
}
