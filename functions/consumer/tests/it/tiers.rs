//! Tiers in local mode, against the real broker: pooled tenants share one concurrency pool (the
//! pooled function's, the account's unreserved concurrency), a dedicated tenant has its own
//! (its effective capacity), both consume, and a move between tiers loses no message.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use shared::{
    AppContext,
    control_plane::{self, Job},
    delivery::{Outcome, Processor, Task},
    domain::{MessageStatus, TenantId, Tier},
    services::{capacity, consumers},
    testkit,
};

use crate::helpers::{
    Slow, configure, context, publish_many, start_event_source, tenant, wait_all,
};

/// Sleeps per message and records the peak of messages in flight per group of tenants.
struct Grouped {
    group: HashMap<TenantId, usize>,
    delay: Duration,
    running: [AtomicUsize; 2],
    peak: [AtomicUsize; 2],
}

#[async_trait::async_trait]
impl Processor for Grouped {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        let g = self.group[&job.tenant_id];
        let now = self.running[g].fetch_add(1, Ordering::SeqCst) + 1;
        self.peak[g].fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running[g].fetch_sub(1, Ordering::SeqCst);
        Outcome::Completed
    }
}

#[tokio::test]
async fn pooled_tenants_share_one_pool_and_a_dedicated_tenant_has_its_own() {
    // A database of its own: the pool is the account's unreserved concurrency, which every
    // dedicated tenant's capacity lowers. An account of 5 makes the pool small enough to see.
    let own = testkit::own_database("tiers").await;
    let mut config = testkit::consumer_config();
    config.database_url = own.database_url.clone();
    config.control.account_concurrency = Some(5);
    let ctx = AppContext::new(config, "tiers-test").unwrap();
    let (a, b, c) = (tenant(&ctx).await, tenant(&ctx).await, tenant(&ctx).await);
    let queues = ["t1", "t2", "t3"];
    for t in [a, b, c] {
        for q in queues {
            configure(&ctx, t, q, 1, 0, 100, None).await;
        }
    }
    // The budget would refuse any capacity in so small an account (it keeps 100 unreserved);
    // the gates are the subject here, so the capacity is stored directly.
    shared::db::control_state::set_desired(&ctx.db, c, Some(2))
        .await
        .unwrap();
    control_plane::request(&ctx, Job::ScaleTenant { tenant_id: c }).await;
    assert_eq!(capacity::pooled_concurrency(&ctx).await.unwrap(), 3);

    let processor = Arc::new(Grouped {
        group: HashMap::from([(a, 0), (b, 0), (c, 1)]),
        delay: Duration::from_millis(100),
        running: Default::default(),
        peak: Default::default(),
    });
    let mut ids = Vec::new();
    for t in [a, b, c] {
        for q in queues {
            ids.push((t, publish_many(&ctx, t, q, 6).await));
        }
    }
    let source = start_event_source(&ctx, processor.clone(), vec![a, b, c]);
    for (t, ids) in &ids {
        wait_all(
            &ctx,
            *t,
            ids,
            MessageStatus::Completed,
            Duration::from_secs(60),
        )
        .await;
    }
    source.stop().await;
    // Six pooled queues want to run at once (one worker each, so messages in flight are
    // batches in flight); the pool lets three. The dedicated tenant's three queues get its 2.
    let peaks = [0, 1].map(|g| processor.peak[g].load(Ordering::SeqCst));
    assert_eq!(peaks, [3, 2], "pooled and dedicated peaks");

    let tiers: HashSet<_> = consumers::status(&ctx, None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.tenant_id, s.tier))
        .collect();
    assert!(tiers.contains(&(a, Tier::Pooled)), "{tiers:?}");
    assert!(tiers.contains(&(c, Tier::Dedicated)), "{tiers:?}");

    drop(ctx);
    shared::db::drop_database(&own).await.unwrap();
}

/// Each move restarts the tenant's mappings on the other tier's gate while batches are in
/// flight: the running batch finishes and is acknowledged, what was prefetched goes back to the
/// queue, and every message completes.
#[tokio::test]
async fn moving_between_tiers_with_messages_in_flight_loses_none() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    for q in ["move-a", "move-b"] {
        configure(&ctx, t, q, 2, 0, 100, None).await;
    }
    let slow = Arc::new(Slow {
        delay: HashMap::from([(t, Duration::from_millis(40))]),
        ..Default::default()
    });
    let mut ids = Vec::new();
    for q in ["move-a", "move-b"] {
        ids.extend(publish_many(&ctx, t, q, 150).await);
    }
    let source = start_event_source(&ctx, slow.clone(), vec![t]);
    for requested in [Some(1), None, Some(2), None, Some(3)] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let applied = capacity::set(&ctx, t, requested).await.unwrap();
        let tier = if requested.is_some() {
            Tier::Dedicated
        } else {
            Tier::Pooled
        };
        assert_eq!(applied.tier, tier);
    }
    let pending = ids.len() - slow.done.lock().unwrap().len();
    assert!(
        pending > 0,
        "the moves happened after every message was done; slow the processing down"
    );
    wait_all(
        &ctx,
        t,
        &ids,
        MessageStatus::Completed,
        Duration::from_secs(60),
    )
    .await;
    source.stop().await;
    let done: HashSet<_> = slow.done.lock().unwrap().iter().copied().collect();
    assert_eq!(done.len(), ids.len(), "every message processed");
}
