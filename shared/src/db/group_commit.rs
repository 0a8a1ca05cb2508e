//! Group commit: concurrent callers hand their items to one task, which writes everything
//! waiting in a single statement and answers each caller with its own items' results. Under
//! load many callers share one commit instead of paying one each; a caller still returns only
//! after its own items are written.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

struct Job<T, R> {
    items: Vec<T>,
    done: oneshot::Sender<Result<Vec<R>>>,
}

pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<Job<T, R>>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts the writer task (needs a Tokio runtime). `write` gets up to about `max_items`
    /// items and returns one result per item, in order.
    pub fn start<F, Fut>(max_items: usize, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Job<T, R>>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                let mut size = jobs[0].items.len();
                while size < max_items {
                    match rx.try_recv() {
                        Ok(job) => {
                            size += job.items.len();
                            jobs.push(job);
                        }
                        Err(_) => break,
                    }
                }
                let counts: Vec<usize> = jobs.iter().map(|j| j.items.len()).collect();
                let (items, senders): (Vec<Vec<T>>, Vec<_>) =
                    jobs.into_iter().map(|j| (j.items, j.done)).unzip();
                match write(items.into_iter().flatten().collect()).await {
                    Ok(results) => {
                        let mut results = results.into_iter();
                        for (n, done) in counts.into_iter().zip(senders) {
                            let _ = done.send(Ok(results.by_ref().take(n).collect()));
                        }
                    }
                    Err(e) => {
                        for done in senders {
                            let _ = done.send(Err(shared_error(&e)));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    pub async fn submit(&self, items: Vec<T>) -> Result<Vec<R>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { items, done })
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("the group-commit writer stopped")))?;
        wait.await.map_err(|_| {
            Error::Internal(anyhow::anyhow!("the group-commit writer dropped a job"))
        })?
    }
}

/// The same error for every caller of a failed write.
fn shared_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(d) => Error::Unavailable(*d),
        other => Error::Internal(anyhow::anyhow!("group write failed: {other}")),
    }
}
