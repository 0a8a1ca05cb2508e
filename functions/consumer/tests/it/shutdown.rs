//! Shutdown: every queue stops taking deliveries at once, then the batches in flight finish.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use shared::delivery::processor::{Outcome, Processor, Task};
use tokio::sync::{Notify, Semaphore};

use crate::helpers::{configure, context, publish_many, start_event_source, tenant};

/// Messages of the queue `held` wait for the gate; the others complete at once, recorded.
struct Gated {
    gate: Semaphore,
    entered: Notify,
    done: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Processor for Gated {
    async fn process(&self, job: &Task<'_>) -> Outcome {
        if job.queue_name == "held" {
            self.entered.notify_one();
            self.gate.acquire().await.unwrap().forget();
        } else {
            self.done.lock().unwrap().push(job.queue_name.to_string());
        }
        Outcome::Completed
    }
}

/// Issue #15, defect 6: the drain stopped one queue at a time, so while the first queue's
/// batch finished the others kept taking new deliveries, and a SIGTERM could outlast its grace
/// period. Now no queue takes a delivery once shutdown began, whichever queue is slow. (With
/// the old order this failed unless the slow queue happened to be drained last: 1 in 9.)
#[tokio::test]
async fn shutdown_stops_every_queue_at_once() {
    let ctx = context().await;
    let t = tenant(&ctx).await;
    let others: Vec<String> = (0..8).map(|i| format!("other-{i}")).collect();
    configure(&ctx, t, "held", 1, 0, 100, None).await;
    for q in &others {
        configure(&ctx, t, q, 1, 0, 100, None).await;
    }
    let gated = Arc::new(Gated {
        gate: Semaphore::new(0),
        entered: Notify::new(),
        done: Mutex::default(),
    });
    let source = start_event_source(&ctx, gated.clone(), vec![t]);
    publish_many(&ctx, t, "held", 1).await;
    tokio::time::timeout(Duration::from_secs(20), gated.entered.notified())
        .await
        .expect("the held message started");

    let stopping = tokio::spawn(source.stop());
    // The event source sees the shutdown at once (it waits on it); give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for q in &others {
        publish_many(&ctx, t, q, 2).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let taken = gated.done.lock().unwrap().clone();
    gated.gate.add_permits(1);
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("the drain finished once the held batch did")
        .unwrap();
    assert!(
        taken.is_empty(),
        "deliveries taken after shutdown began: {taken:?}"
    );
}
