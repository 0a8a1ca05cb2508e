use std::{sync::Arc, time::Duration};

use serde_json::json;
use shared::{
    domain::{MessageStatus, QueueName},
    services::dead_letters::{RedriveSelector, redrive},
};

use crate::helpers::{
    FailTimes, configure, context, message, publish, start_event_source, tenant, wait_all,
};

#[tokio::test]
async fn fails_twice_then_completes_with_three_attempts() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    configure(&ctx, t, "jobs", 2, 3, 100, None).await;
    let source = start_event_source(
        &ctx,
        Arc::new(FailTimes {
            n: 2,
            ..Default::default()
        }),
        vec![t],
    );
    let id = publish(&ctx, t, "jobs", json!({"job": 1})).await;
    wait_all(
        &ctx,
        t,
        &[id],
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    source.stop().await;

    let m = message(&ctx, t, id).await;
    assert_eq!(m.attempts, 3);
    let attempts = shared::db::attempts::list(&ctx.db, t, id).await.unwrap();
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| a.outcome.clone().unwrap())
        .collect();
    assert_eq!(outcomes, ["retrying", "retrying", "completed"]);
    assert_eq!(attempts[0].error.as_deref(), Some("failure 1"));
    assert!(attempts.iter().all(|a| a.finished_at.is_some()));
}

#[tokio::test]
async fn always_failing_message_is_dead_lettered_after_its_retries_with_growing_delays() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let delay_ms = 200;
    configure(&ctx, t, "jobs", 1, 3, delay_ms, None).await;
    let source = start_event_source(
        &ctx,
        Arc::new(FailTimes {
            n: u32::MAX,
            ..Default::default()
        }),
        vec![t],
    );
    let id = publish(&ctx, t, "jobs", json!({"job": "doomed"})).await;
    wait_all(
        &ctx,
        t,
        &[id],
        MessageStatus::DeadLettered,
        Duration::from_secs(20),
    )
    .await;
    source.stop().await;

    let m = message(&ctx, t, id).await;
    assert_eq!(m.attempts, 4, "the first attempt and exactly 3 retries");
    assert_eq!(m.last_error.as_deref(), Some("failure 4"));
    assert!(m.dead_lettered_at.is_some());
    let attempts = shared::db::attempts::list(&ctx.db, t, id).await.unwrap();
    assert_eq!(attempts.len(), 4);
    assert_eq!(attempts[3].outcome.as_deref(), Some("dead_lettered"));
    // Gaps between attempts follow 200, 400, 800 ms (less up to 10% jitter), each longer.
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|w| (w[1].started_at - w[0].finished_at.unwrap()).num_milliseconds())
        .collect();
    for (i, gap) in gaps.iter().enumerate() {
        let tier = delay_ms << i;
        assert!(
            *gap >= tier * 9 / 10,
            "gap {i} = {gap} ms, expected about {tier} ms: {gaps:?}"
        );
        assert!(
            *gap < tier + 1500,
            "gap {i} = {gap} ms is far beyond {tier} ms: {gaps:?}"
        );
    }
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "delays grow: {gaps:?}"
    );

    // Listed as a dead letter, then redriven with a fresh budget; now it succeeds.
    let dl = shared::db::messages::list(
        &ctx.db,
        t,
        &shared::db::messages::MessageFilter {
            status: Some(MessageStatus::DeadLettered),
            queue_name: None,
        },
        &shared::domain::PageRequest::parse(None, None, 100).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(dl.len(), 1);
    let selector = RedriveSelector {
        queue_name: Some(QueueName::parse("jobs").unwrap()),
        ids: None,
    };
    let report = redrive(&ctx, t, &selector).await.unwrap();
    assert_eq!((report.redriven, report.queued), (1, 1));
    let source = start_event_source(&ctx, Arc::new(FailTimes::default()), vec![t]);
    wait_all(
        &ctx,
        t,
        &[id],
        MessageStatus::Completed,
        Duration::from_secs(20),
    )
    .await;
    source.stop().await;
    let m = message(&ctx, t, id).await;
    assert_eq!(m.attempts, 1, "a fresh attempt budget");
    let attempts = shared::db::attempts::list(&ctx.db, t, id).await.unwrap();
    assert_eq!(attempts.len(), 5, "history kept across the redrive");
    // Nothing left to redrive.
    assert_eq!(
        redrive(&ctx, t, &RedriveSelector::default())
            .await
            .unwrap()
            .redriven,
        0
    );
}
