use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use shared::domain::MessageStatus;

use crate::helpers::{
    Slow, configure, context, message, publish_many, start_event_source, tenant, wait_all,
};

#[tokio::test]
async fn workers_set_how_many_messages_run_at_once() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let slow = Arc::new(Slow {
        delay: HashMap::from([(t, Duration::from_millis(150))]),
        ..Default::default()
    });
    configure(&ctx, t, "work", 1, 0, 100, None).await;
    let source = start_event_source(&ctx, slow.clone(), vec![t]);

    let mut peaks = Vec::new();
    for workers in [1, 6, 2] {
        configure(&ctx, t, "work", workers, 0, 100, None).await;
        // The event source applies the change within its poll interval.
        tokio::time::sleep(Duration::from_millis(600)).await;
        slow.reset_peak();
        let ids = publish_many(&ctx, t, "work", 18).await;
        wait_all(
            &ctx,
            t,
            &ids,
            MessageStatus::Completed,
            Duration::from_secs(30),
        )
        .await;
        peaks.push(slow.peak.load(Ordering::SeqCst));
    }
    source.stop().await;
    assert_eq!(peaks[0], 1, "workers=1 runs one at a time: {peaks:?}");
    assert!(
        peaks[1] > 2 && peaks[1] <= 6,
        "workers=6 runs several at once: {peaks:?}"
    );
    assert_eq!(peaks[2], 2, "workers=2 after lowering: {peaks:?}");
}

#[tokio::test]
async fn a_flooded_tenant_does_not_hold_back_another() {
    let ctx = context().await;
    let (flooded, quiet) = (tenant(&ctx).await, tenant(&ctx).await);
    let slow = Arc::new(Slow {
        delay: HashMap::from([(flooded, Duration::from_millis(50))]),
        ..Default::default()
    });
    configure(&ctx, flooded, "bulk", 1, 0, 100, None).await;
    configure(&ctx, quiet, "urgent", 1, 0, 100, None).await;
    let flood = publish_many(&ctx, flooded, "bulk", 300).await; // 15 s of work at one worker
    let source = start_event_source(&ctx, slow.clone(), vec![flooded, quiet]);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let urgent = publish_many(&ctx, quiet, "urgent", 5).await;
    wait_all(
        &ctx,
        quiet,
        &urgent,
        MessageStatus::Completed,
        Duration::from_secs(5),
    )
    .await;
    let quiet_took = started.elapsed();

    let mut flood_left = 0;
    for id in &flood {
        if message(&ctx, flooded, *id).await.status != MessageStatus::Completed {
            flood_left += 1;
        }
    }
    source.stop().await;
    assert!(
        flood_left > 100,
        "the flood was still draining ({flood_left} left) when the quiet tenant finished"
    );
    println!("quiet tenant's 5 messages completed in {quiet_took:?} behind a flood of 300");
}

/// A tenant's capacity caps its batches in flight across all its queues, as reserved
/// concurrency caps a tenant function in AWS, and a change applies without a restart.
#[tokio::test]
async fn a_tenants_capacity_caps_its_batches_across_queues() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let queues = ["cap-a", "cap-b", "cap-c"];
    for q in queues {
        configure(&ctx, t, q, 1, 0, 100, None).await;
    }
    shared::db::control_state::set_desired(&ctx.db, t, Some(1))
        .await
        .unwrap();
    let slow = Arc::new(Slow {
        delay: HashMap::from([(t, Duration::from_millis(150))]),
        ..Default::default()
    });
    let source = start_event_source(&ctx, slow.clone(), vec![t]);

    let mut peaks = Vec::new();
    for capacity in [1, 3] {
        shared::db::control_state::set_desired(&ctx.db, t, Some(capacity))
            .await
            .unwrap();
        // The event source reads capacities within its poll interval.
        tokio::time::sleep(Duration::from_millis(600)).await;
        slow.reset_peak();
        let mut ids = Vec::new();
        for q in queues {
            ids.extend(publish_many(&ctx, t, q, 6).await);
        }
        wait_all(
            &ctx,
            t,
            &ids,
            MessageStatus::Completed,
            Duration::from_secs(30),
        )
        .await;
        peaks.push(slow.peak.load(Ordering::SeqCst));
    }
    source.stop().await;
    // One worker per queue, so messages in flight equal batches in flight.
    assert_eq!(
        peaks[0], 1,
        "capacity 1 runs one batch at a time: {peaks:?}"
    );
    assert!(
        peaks[1] > 1,
        "capacity 3 runs the three queues' batches at once: {peaks:?}"
    );
}
