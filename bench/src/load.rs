//! Load generators: closed loop (N workers back to back) and open loop (a fixed arrival rate,
//! so a slow response does not slow the offered load down).

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

#[derive(Debug, Default)]
pub struct Run {
    pub latencies: Vec<Duration>,
    /// Items done (a batch op counts its messages).
    pub items: usize,
    pub errors: usize,
    /// The first error, to say what went wrong.
    pub first_error: Option<String>,
    pub wall: Duration,
}

impl Run {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    /// Fails the scenario if any call failed, naming the first error.
    pub fn ensure_ok(&self, what: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.errors == 0,
            "{what}: {} errors, the first: {}",
            self.errors,
            self.first_error.as_deref().unwrap_or("")
        );
        Ok(())
    }
}

/// `concurrency` workers call `op` back to back for `duration`. `op` returns how many items it
/// handled.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, op: F) -> Run
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<usize>> + Send,
{
    let op = Arc::new(op);
    let run = Arc::new(Mutex::new(Run::default()));
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, run) = (op.clone(), run.clone());
            tokio::spawn(async move {
                let mut local = Run::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match op().await {
                        Ok(n) => {
                            local.latencies.push(t.elapsed());
                            local.items += n;
                        }
                        Err(e) => local.error(format!("{e:#}")),
                    }
                }
                let mut r = run.lock().await;
                r.latencies.extend(local.latencies);
                r.items += local.items;
                r.errors += local.errors;
                if r.first_error.is_none() {
                    r.first_error = local.first_error;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let mut r = Arc::try_unwrap(run).expect("workers done").into_inner();
    r.wall = start.elapsed();
    r
}

/// Starts `op` at `rate` per second for `duration`, each call on its own task.
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, op: F) -> Run
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<usize>> + Send + 'static,
{
    let op = Arc::new(op);
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut calls = Vec::new();
    while start.elapsed() < duration {
        tick.tick().await;
        let op = op.clone();
        calls.push(tokio::spawn(async move {
            let t = Instant::now();
            op().await.map(|n| (t.elapsed(), n))
        }));
    }
    let mut run = Run::default();
    for c in calls {
        match c.await {
            Ok(Ok((lat, n))) => {
                run.latencies.push(lat);
                run.items += n;
            }
            Ok(Err(e)) => run.error(format!("{e:#}")),
            Err(e) => run.error(e.to_string()),
        }
    }
    run.wall = start.elapsed();
    run
}
