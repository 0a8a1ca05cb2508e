//! Group commit for `pending -> queued`. Concurrent publishes hand their confirmed ids to one
//! task that marks everything waiting in a single UPDATE, then answers each caller, so under
//! load many publishes share one commit instead of paying one each. A caller still returns only
//! after its own messages are marked.

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    db::{self, Pool},
    domain::TenantId,
    error::{Error, Result},
};

/// Most ids one UPDATE takes.
const MAX_BATCH: usize = 2000;

struct Job {
    pairs: Vec<(TenantId, Uuid)>,
    done: oneshot::Sender<Result<()>>,
}

#[derive(Clone)]
pub struct QueuedMarker {
    tx: mpsc::Sender<Job>,
}

impl QueuedMarker {
    /// Starts the marking task (needs a Tokio runtime).
    pub fn start(pool: Pool) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(pool, rx));
        Self { tx }
    }

    pub async fn mark(&self, tenant: TenantId, ids: &[Uuid]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let pairs = ids.iter().map(|id| (tenant, *id)).collect();
        self.tx
            .send(Job { pairs, done })
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the queued marker stopped")))?;
        wait.await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the queued marker dropped a job")))?
    }
}

async fn run(pool: Pool, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut size = jobs[0].pairs.len();
        while size < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.pairs.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let pairs: Vec<(TenantId, Uuid)> =
            jobs.iter().flat_map(|j| j.pairs.iter().copied()).collect();
        let outcome = db::messages::mark_queued(&pool, &pairs).await.map(|_| ());
        for job in jobs {
            let _ = job.done.send(match &outcome {
                Ok(()) => Ok(()),
                Err(Error::Unavailable(d)) => Err(Error::Unavailable(*d)),
                Err(e) => Err(Error::Internal(anyhow::anyhow!(
                    "marking messages queued failed: {e}"
                ))),
            });
        }
    }
}
