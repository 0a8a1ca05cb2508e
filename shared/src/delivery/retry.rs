//! Retry delays: exponential from the queue's `retry_delay`, at least any `Retry-After`,
//! capped, rounded up to a tier (`retry_delay * 2^k`) so a broker holds few wait queues, then
//! jittered down by up to 10% per message so retries of a burst spread out.

use std::time::Duration;

/// The wait tier for the `attempt`-th failure (1-based).
pub fn tier(
    base: Duration,
    attempt: u32,
    cap: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let base = base.max(Duration::from_millis(1));
    let cap = cap.max(base);
    let exponential = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let wanted = exponential.max(retry_after.unwrap_or_default()).min(cap);
    let mut t = base;
    while t < wanted {
        t = t.saturating_mul(2);
    }
    t.min(cap)
}

/// The actual wait for one message: the tier less up to 10% of it.
pub fn jittered(tier: Duration) -> Duration {
    let max_jitter = tier.as_millis() as u64 / 10;
    let jitter = if max_jitter == 0 {
        0
    } else {
        rand::random_range(0..=max_jitter)
    };
    tier.saturating_sub(Duration::from_millis(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn grows_and_caps() {
        let cap = Duration::from_secs(60);
        let tiers: Vec<u64> = (1..=8).map(|a| tier(S, a, cap, None).as_secs()).collect();
        assert_eq!(tiers, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn honours_retry_after_on_a_tier() {
        let cap = Duration::from_secs(600);
        assert_eq!(
            tier(S, 1, cap, Some(Duration::from_secs(5))),
            Duration::from_secs(8)
        );
        assert_eq!(tier(S, 1, cap, Some(Duration::from_secs(9999))), cap);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000));
            assert!((900..=1000).contains(&d.as_millis()), "{d:?}");
        }
    }
}
