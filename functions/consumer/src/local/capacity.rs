//! A tenant's capacity outside AWS. In AWS the tenant function's reserved concurrency caps how
//! many of its batches run at once, whatever the number of queues; locally the event source
//! plays that part with one gate per tenant, whose limit follows the tenant's capacity while
//! batches run (no restart). A tenant at capacity 0 has no mapping at all (the event source
//! stops them), so none of its messages wait here prefetched.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug)]
struct State {
    limit: u32,
    in_flight: u32,
}

/// One running batch; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit(Arc<Gate>);

impl Gate {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                limit,
                in_flight: 0,
            }),
            changed: Notify::new(),
        })
    }

    pub fn limit(&self) -> u32 {
        self.state.lock().unwrap().limit
    }

    /// A lower limit lets the batches already running finish; it holds back new ones.
    pub fn set_limit(&self, limit: u32) {
        let mut s = self.state.lock().unwrap();
        if s.limit != limit {
            s.limit = limit;
            drop(s);
            self.changed.notify_waiters();
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.state.lock().unwrap().in_flight
    }

    /// Waits for a slot. A limit of 0 (reserved concurrency 0 throttles a function in AWS)
    /// waits until the limit is raised.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            // Registered before the check, so a release between the check and the wait is
            // not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock().unwrap();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Permit(self.clone());
                }
            }
            notified.await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().in_flight -= 1;
        self.0.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn blocked(gate: &Arc<Gate>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), gate.acquire())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn holds_back_beyond_the_limit_and_follows_changes() {
        let gate = Gate::new(1);
        let first = gate.acquire().await;
        assert!(blocked(&gate).await, "a second batch waits at limit 1");
        gate.set_limit(2);
        let second = gate.acquire().await;
        assert_eq!(gate.in_flight(), 2);
        gate.set_limit(1);
        drop(first);
        assert!(blocked(&gate).await, "lowered: one still running fills it");
        drop(second);
        let _third = gate.acquire().await;
        assert_eq!(gate.in_flight(), 1);
    }

    #[tokio::test]
    async fn zero_waits_until_raised() {
        let gate = Gate::new(0);
        assert!(blocked(&gate).await);
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.set_limit(1);
        let permit = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("woken by the raise")
            .unwrap();
        drop(permit);
        assert_eq!(gate.in_flight(), 0);
    }
}
