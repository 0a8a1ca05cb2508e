use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString},
};

use super::topology::{
    QueueRef, retry_exchange, wait_queue, wait_queue_args, work_queue, work_queue_args,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connect, callers fail fast for this long instead of each retrying.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);
const PUBLISH_CHANNELS: usize = 4;
/// A wait tier in use is declared again after this long, renewing its `x-expires` lease
/// (at least ten minutes, see `topology::wait_expires`).
const WAIT_TIER_RENEW: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unreachable: {0}")]
    Unreachable(String),
    #[error("broker did not confirm the publish")]
    NotConfirmed,
    #[error("no queue bound for routing key {0}")]
    Unroutable(String),
    #[error("broker error: {0}")]
    Protocol(#[from] lapin::Error),
}

impl From<BrokerError> for crate::Error {
    fn from(err: BrokerError) -> Self {
        tracing::warn!(error = %err, "broker operation failed");
        crate::Error::Unavailable(crate::error::Dependency::Broker)
    }
}

/// One message to publish, persistent: through the default exchange to the queue named by
/// `queue`, or through `exchange` with `queue` as routing key.
pub struct Outbound<'a> {
    /// `""` for the default exchange.
    pub exchange: &'a str,
    pub queue: &'a str,
    pub message_id: String,
    pub body: &'a [u8],
    pub headers: FieldTable,
    /// Per-message TTL in milliseconds (used for retry jitter).
    pub expiration_ms: Option<u64>,
}

impl Outbound<'_> {
    /// Headers as AMQP long strings.
    pub fn string_headers<'k>(pairs: impl IntoIterator<Item = (&'k str, &'k str)>) -> FieldTable {
        let mut table = FieldTable::default();
        for (k, v) in pairs {
            table.insert(
                k.into(),
                AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
            );
        }
        table
    }
}

#[derive(Clone)]
struct Session {
    conn: Arc<Connection>,
    /// Confirm channels, opened on first publish: a connection that only consumes (the local
    /// event source's) carries no channel but its consumers'.
    channels: Arc<Vec<tokio::sync::Mutex<Option<Channel>>>>,
}

impl Session {
    fn alive(&self) -> bool {
        self.conn.status().connected()
    }
}

/// A process-wide handle on RabbitMQ. Cheap to share (`Arc`); connects lazily and again after
/// the connection is lost.
pub struct Broker {
    url: String,
    name: String,
    session: RwLock<Option<Session>>,
    connecting: tokio::sync::Mutex<()>,
    last_failure: Mutex<Option<Instant>>,
    next_channel: AtomicUsize,
    /// Queues declared on the current connection, so each is declared once, not per publish.
    declared: Mutex<HashSet<String>>,
    /// Retry exchanges whose wait tier was declared on the current connection, and when.
    tiers: Mutex<HashMap<String, Instant>>,
}

impl Broker {
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            url: url.into(),
            name: name.into(),
            session: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
            next_channel: AtomicUsize::new(0),
            declared: Mutex::new(HashSet::new()),
            tiers: Mutex::new(HashMap::new()),
        })
    }

    fn current(&self) -> Option<Session> {
        self.session
            .read()
            .expect("broker lock")
            .clone()
            .filter(Session::alive)
    }

    /// The live connection, opening one if needed.
    pub async fn connection(&self) -> Result<Arc<Connection>, BrokerError> {
        Ok(self.session().await?.conn)
    }

    /// True when a connection is open (no network round trip).
    pub fn is_connected(&self) -> bool {
        self.current().is_some()
    }

    /// Connects if needed and answers whether the broker is reachable.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let session = self.session().await?;
        // Opening and closing a channel is a real round trip to the broker.
        let ch = session.conn.create_channel().await?;
        let _ = ch.close(200, "ping".into()).await;
        Ok(())
    }

    async fn session(&self) -> Result<Session, BrokerError> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let _guard = self.connecting.lock().await;
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let last_failure = *self.last_failure.lock().expect("broker lock");
        if last_failure.is_some_and(|t| t.elapsed() < RECONNECT_BACKOFF) {
            return Err(BrokerError::Unreachable("reconnecting".into()));
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(Ok(session)) => {
                *self.last_failure.lock().expect("broker lock") = None;
                self.declared.lock().expect("broker lock").clear();
                self.tiers.lock().expect("broker lock").clear();
                *self.session.write().expect("broker lock") = Some(session.clone());
                tracing::info!(name = %self.name, "connected to RabbitMQ");
                Ok(session)
            }
            outcome => {
                *self.last_failure.lock().expect("broker lock") = Some(Instant::now());
                let reason = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_string(),
                };
                tracing::warn!(name = %self.name, %reason, "cannot connect to RabbitMQ");
                Err(BrokerError::Unreachable(reason))
            }
        }
    }

    async fn connect(&self) -> Result<Session, lapin::Error> {
        let props = ConnectionProperties::default().with_connection_name(self.name.clone().into());
        let conn = Connection::connect(&self.url, props).await?;
        Ok(Session {
            conn: Arc::new(conn),
            channels: Arc::new((0..PUBLISH_CHANNELS).map(|_| Default::default()).collect()),
        })
    }

    /// A healthy confirm channel, round robin; one not yet open, or closed by an error, is
    /// opened (under its slot's lock, so concurrent publishers open it once).
    async fn publish_channel(&self) -> Result<Channel, BrokerError> {
        let session = self.session().await?;
        let i = self.next_channel.fetch_add(1, Ordering::Relaxed) % session.channels.len();
        let mut slot = session.channels[i].lock().await;
        if let Some(ch) = slot.as_ref().filter(|ch| ch.status().connected()) {
            return Ok(ch.clone());
        }
        let fresh = confirm_channel(&session.conn).await?;
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// Opens a new channel (for consumers, which need their own).
    pub async fn channel(&self) -> Result<Channel, BrokerError> {
        Ok(self.session().await?.conn.create_channel().await?)
    }

    /// Publishes every message persistently and waits for the broker's confirms, pipelined.
    /// Each result says whether that message is safely on a queue.
    pub async fn publish_confirmed(
        &self,
        messages: &[Outbound<'_>],
    ) -> Vec<Result<(), BrokerError>> {
        let channel = match self.publish_channel().await {
            Ok(ch) => ch,
            Err(e) => return fail_all(messages.len(), &e),
        };
        // One deadline for the whole batch, sends included: a broker that blocks publishers
        // (a memory or disk alarm) or stops confirming costs CONFIRM_TIMEOUT once, not per
        // message.
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        let mut pending: Vec<Result<PublisherConfirm, BrokerError>> =
            Vec::with_capacity(messages.len());
        for m in messages {
            let mut props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(m.message_id.clone().into())
                .with_timestamp(chrono::Utc::now().timestamp() as u64)
                .with_headers(m.headers.clone());
            if let Some(ms) = m.expiration_ms {
                props = props.with_expiration(ms.to_string().into());
            }
            let send = channel.basic_publish(
                m.exchange.into(),
                m.queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                m.body,
                props,
            );
            let sent = match tokio::time::timeout_at(deadline, send).await {
                Err(_) => Err(BrokerError::NotConfirmed),
                Ok(r) => r.map_err(BrokerError::from),
            };
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(messages.len());
        for (sent, m) in pending.into_iter().zip(messages) {
            let outcome = match sent {
                Err(e) => Err(e),
                Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                    Err(_) => Err(BrokerError::NotConfirmed),
                    Ok(Err(e)) => Err(e.into()),
                    Ok(Ok(c)) if !c.is_ack() => Err(BrokerError::NotConfirmed),
                    Ok(Ok(c)) => match c.take_message() {
                        // Returned as unroutable: the queue does not exist (any more).
                        Some(_) => {
                            self.forget_declared(m.queue);
                            self.tiers.lock().expect("broker lock").remove(m.exchange);
                            Err(BrokerError::Unroutable(m.queue.to_string()))
                        }
                        None => Ok(()),
                    },
                },
            };
            results.push(outcome);
        }
        results
    }

    /// Messages ready on the queue now (not those delivered and unacknowledged); `None` when
    /// the queue does not exist. A passive declaration on a channel of its own, since a missing
    /// queue closes the channel it was asked on.
    pub async fn ready_count(&self, queue: &str) -> Result<Option<u32>, BrokerError> {
        let ch = self.channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        match ch
            .queue_declare(queue.into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => {
                let _ = ch.close(200, "counted".into()).await;
                Ok(Some(q.message_count()))
            }
            Err(e) => match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404 => Ok(None),
                _ => Err(e.into()),
            },
        }
    }

    /// Declares a tenant queue's work queue, once per connection. A work queue that already
    /// exists with other arguments (declared by an earlier version: RabbitMQ refuses such a
    /// declaration with PRECONDITION_FAILED) is used as it is, so an upgrade neither fails nor
    /// moves messages.
    pub async fn ensure_queue(&self, q: &QueueRef) -> Result<(), BrokerError> {
        let work = work_queue(q);
        if self.declared.lock().expect("broker lock").contains(&work) {
            return Ok(());
        }
        // A separate channel: a declaration error closes its channel, never a publish channel.
        let ch = self.channel().await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        match ch
            .queue_declare(work.as_str().into(), durable, work_queue_args())
            .await
        {
            Ok(_) => {
                let _ = ch.close(200, "declared".into()).await;
            }
            Err(e) if is_precondition_failed(&e) => {
                tracing::debug!(queue = %work, "work queue exists with earlier arguments; kept");
                self.ready_count(&work).await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.declared.lock().expect("broker lock").insert(work);
        Ok(())
    }

    /// Declares the broker's wait tier for `delay` (its retry exchange, wait queue and the
    /// binding between them) when this connection has not in the last `WAIT_TIER_RENEW`;
    /// returns the exchange to publish retries to, with the work queue's name as routing key.
    pub async fn ensure_wait_tier(&self, delay: Duration) -> Result<String, BrokerError> {
        let exchange = retry_exchange(delay);
        let fresh = self
            .tiers
            .lock()
            .expect("broker lock")
            .get(&exchange)
            .is_some_and(|at| at.elapsed() < WAIT_TIER_RENEW);
        if fresh {
            return Ok(exchange);
        }
        let queue = wait_queue(delay);
        let ch = self.channel().await?;
        ch.exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            wait_queue_args(delay),
        )
        .await?;
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let _ = ch.close(200, "declared".into()).await;
        self.tiers
            .lock()
            .expect("broker lock")
            .insert(exchange.clone(), Instant::now());
        Ok(exchange)
    }

    /// Deletes a tenant queue's work queue (test and benchmark clean-up; best effort).
    pub async fn delete_queues(&self, q: &QueueRef) {
        let Ok(ch) = self.channel().await else { return };
        let name = work_queue(q);
        let _ = ch
            .queue_delete(
                name.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
        self.forget_declared(&name);
        let _ = ch.close(200, "deleted".into()).await;
    }

    fn forget_declared(&self, queue: &str) {
        self.declared.lock().expect("broker lock").remove(queue);
    }

    /// Closes the connection (graceful shutdown).
    pub async fn close(&self) {
        let session = self.session.write().expect("broker lock").take();
        if let Some(s) = session {
            let _ = s.conn.close(200, "shutdown".into()).await;
        }
    }
}

async fn confirm_channel(conn: &Connection) -> Result<Channel, lapin::Error> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}

fn fail_all(n: usize, e: &BrokerError) -> Vec<Result<(), BrokerError>> {
    (0..n)
        .map(|_| Err(BrokerError::Unreachable(e.to_string())))
        .collect()
}
