//! The broker registry as admins manage it: register a broker, change its budget or whether it
//! takes new tenants, and see what each holds. See `db::brokers` for assignment.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    AppContext,
    db::{
        self,
        brokers::{BrokerRecord, BrokerSettings, HOME},
    },
    error::{Code, Error, Result},
};

/// The largest `max_queues` accepted (above any Amazon MQ instance's queue limit).
pub const MAX_QUEUES_LIMIT: i32 = 1_000_000;

/// A broker as an admin registers or replaces it. URLs carry no user or password: every broker
/// is reached with the deployment's broker user.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BrokerRequest {
    /// `amqp://` or `amqps://` host, port and virtual host (e.g.
    /// `amqps://b-1234.mq.eu-west-1.amazonaws.com:5671/%2f`). Required, except for `default`,
    /// whose URLs come from the deployment's configuration.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^amqps?://[a-z0-9.-]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?(/[A-Za-z0-9%._-]*)?$"
        )
    )]
    pub amqp_url: Option<String>,
    /// `http(s)://` host and port of its management API, for queue depths.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^https?://[a-z0-9.-]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?/?$"
        )
    )]
    pub management_url: Option<String>,
    /// The Amazon MQ broker's ARN, for the event source mappings of its tenants' queues.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^arn:[^:]+:[^:]+:[^:]*:[^:]*:.+$")
    )]
    pub mq_broker_arn: Option<String>,
    /// The Secrets Manager secret the mappings log in with (default: the deployment's).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^arn:[^:]+:[^:]+:[^:]*:[^:]*:.+$")
    )]
    pub mq_secret_arn: Option<String>,
    /// How many tenant queues it may hold (see the README's sizing table); absent: no cap.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1000000))]
    #[serde(default, deserialize_with = "crate::domain::bounds::json_integer_opt")]
    pub max_queues: Option<i64>,
    /// Whether new tenants are assigned to it (default true).
    pub accepting: Option<bool>,
}

/// A registered broker with what it holds.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BrokerView {
    #[serde(flatten)]
    pub broker: BrokerRecord,
    /// The virtual host its tenants' queues are on.
    pub vhost: String,
    pub tenants: i64,
    /// Tenant queues on it, counted against `max_queues`.
    pub queues: i64,
    /// Whether it answered an AMQP round trip from this API instance just now (only on
    /// `GET /brokers/{broker_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
}

pub fn validate_id(id: &str) -> Result<()> {
    let ok = (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "broker id {id:?}: 1 to 32 lowercase letters, digits or '-', not starting with '-'"
        )))
    }
}

fn invalid(message: String) -> Error {
    Error::invalid(Code::InvalidBroker, message)
}

/// A URL of one of `schemes`, with a host and no credentials.
fn check_url(field: &str, raw: &str, schemes: &[&str]) -> Result<String> {
    let url = url::Url::parse(raw).map_err(|e| invalid(format!("{field}: {e}")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(invalid(format!(
            "{field}: the scheme must be one of {}",
            schemes.join(", ")
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{field}: no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(format!(
            "{field}: no user or password here; brokers are reached with the deployment's \
             broker user (RABBITMQ_URL, MQ_SECRET_ARN)"
        )));
    }
    Ok(raw.to_string())
}

fn check_arn(field: &str, raw: &str) -> Result<String> {
    if raw.starts_with("arn:") && raw.split(':').count() >= 6 && !raw.chars().any(char::is_control)
    {
        Ok(raw.to_string())
    } else {
        Err(invalid(format!("{field}: {raw:?} is not an ARN")))
    }
}

fn settings(id: &str, req: &BrokerRequest) -> Result<BrokerSettings> {
    let max_queues = match req.max_queues {
        None => None,
        Some(n) if (0..=i64::from(MAX_QUEUES_LIMIT)).contains(&n) => Some(n as i32),
        Some(n) => {
            return Err(invalid(format!(
                "max_queues {n} is out of range (0 to {MAX_QUEUES_LIMIT})"
            )));
        }
    };
    let home = id == HOME;
    if home
        && (req.amqp_url.is_some()
            || req.management_url.is_some()
            || req.mq_broker_arn.is_some()
            || req.mq_secret_arn.is_some())
    {
        return Err(Error::conflict(
            Code::BrokerConfigured,
            "the default broker's URLs and ARNs come from the deployment's configuration \
             (RABBITMQ_URL, RABBITMQ_MANAGEMENT_URL, MQ_BROKER_ARN, MQ_SECRET_ARN); only \
             max_queues and accepting can be set",
        ));
    }
    let amqp_url = match (&req.amqp_url, home) {
        (Some(u), _) => Some(check_url("amqp_url", u, &["amqp", "amqps"])?),
        (None, true) => None,
        (None, false) => return Err(invalid("amqp_url is required".into())),
    };
    Ok(BrokerSettings {
        amqp_url,
        management_url: req
            .management_url
            .as_deref()
            .map(|u| check_url("management_url", u, &["http", "https"]))
            .transpose()?,
        mq_broker_arn: req
            .mq_broker_arn
            .as_deref()
            .map(|a| check_arn("mq_broker_arn", a))
            .transpose()?,
        mq_secret_arn: req
            .mq_secret_arn
            .as_deref()
            .map(|a| check_arn("mq_secret_arn", a))
            .transpose()?,
        max_queues,
        accepting: req.accepting.unwrap_or(true),
    })
}

/// Registers a broker; new tenants may be assigned to it at once (unless `accepting: false`).
pub async fn register(ctx: &AppContext, id: &str, req: &BrokerRequest) -> Result<BrokerView> {
    validate_id(id)?;
    if id == HOME {
        return Err(Error::conflict(
            Code::BrokerExists,
            "the default broker is always registered; PUT /brokers/default changes it",
        ));
    }
    let record = db::brokers::insert(&ctx.db, id, &settings(id, req)?).await?;
    tracing::info!(broker = %record.id, max_queues = ?record.max_queues, "broker registered");
    view(ctx, id, false).await
}

/// Changes a broker's settings (absent fields keep theirs). Tenants already on it stay; a
/// changed URL reaches processes started after the change.
pub async fn update(ctx: &AppContext, id: &str, req: &BrokerRequest) -> Result<BrokerView> {
    // An id no broker can have names none (and never reaches a query).
    validate_id(id).map_err(|_| Error::NotFound(Code::BrokerNotFound))?;
    let current = db::brokers::get(&ctx.db, id)
        .await?
        .ok_or(Error::NotFound(Code::BrokerNotFound))?;
    // Absent (or null) fields keep their value, as a consumer config's do.
    let merged = BrokerRequest {
        amqp_url: req.amqp_url.clone().or(current.amqp_url),
        management_url: req.management_url.clone().or(current.management_url),
        mq_broker_arn: req.mq_broker_arn.clone().or(current.mq_broker_arn),
        mq_secret_arn: req.mq_secret_arn.clone().or(current.mq_secret_arn),
        max_queues: req.max_queues.or(current.max_queues.map(i64::from)),
        accepting: req.accepting.or(Some(current.accepting)),
    };
    db::brokers::update(&ctx.db, id, &settings(id, &merged)?)
        .await?
        .ok_or(Error::NotFound(Code::BrokerNotFound))?;
    view(ctx, id, false).await
}

pub async fn list(ctx: &AppContext) -> Result<Vec<BrokerView>> {
    let usage = db::brokers::list_with_usage(&ctx.db).await?;
    usage
        .into_iter()
        .map(|u| {
            let endpoint = ctx.brokers.endpoint(&u.broker)?;
            Ok(BrokerView {
                vhost: endpoint.vhost.clone(),
                broker: u.broker,
                tenants: u.tenants,
                queues: u.queues,
                reachable: None,
            })
        })
        .collect()
}

/// One broker; with `ping`, whether it answers now.
pub async fn view(ctx: &AppContext, id: &str, ping: bool) -> Result<BrokerView> {
    validate_id(id).map_err(|_| Error::NotFound(Code::BrokerNotFound))?;
    let mut found = list(ctx)
        .await?
        .into_iter()
        .find(|b| b.broker.id == id)
        .ok_or(Error::NotFound(Code::BrokerNotFound))?;
    if ping {
        let endpoint = ctx.brokers.endpoint(&found.broker)?;
        let answered = tokio::time::timeout(Duration::from_secs(3), endpoint.broker.ping()).await;
        found.reachable = Some(matches!(answered, Ok(Ok(()))));
    }
    Ok(found)
}
