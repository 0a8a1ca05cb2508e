//! The process's view of the broker registry (`db::brokers`): one [`Broker`] handle per
//! registered broker, opened when a tenant on it is first served, and each tenant's broker,
//! remembered for the life of the process (a tenant never changes broker).
//!
//! Registered brokers are reached with the deployment's own broker user: the user and password
//! of `RABBITMQ_URL` (and of `RABBITMQ_MANAGEMENT_URL`) go with every registered URL, so the
//! registry holds no secret.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use reqwest::Url;

use super::Broker;
use crate::{
    Config,
    db::{self, Pool, brokers::BrokerRecord},
    domain::TenantId,
    error::{Code, Error, Result},
};

/// One broker as this process reaches it.
pub struct Endpoint {
    pub id: String,
    pub broker: Arc<Broker>,
    /// The AMQP URL with credentials (for connections of the process's own, such as the local
    /// event source's).
    pub amqp_url: String,
    /// With credentials, for `broker::stats` (`None`: no management API).
    pub management_url: Option<String>,
    /// The virtual host, as the broker names it (`/` for `%2f`).
    pub vhost: String,
    pub mq_broker_arn: Option<String>,
    pub mq_secret_arn: Option<String>,
}

pub struct Brokers {
    home: Arc<Endpoint>,
    amqp_user: Credentials,
    management_user: Credentials,
    process_name: String,
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
    tenants: RwLock<HashMap<TenantId, Arc<Endpoint>>>,
}

#[derive(Clone, Default)]
struct Credentials {
    user: String,
    password: Option<String>,
}

impl Credentials {
    fn of(url: &str) -> Self {
        Url::parse(url)
            .map(|u| Credentials {
                user: u.username().to_string(),
                password: u.password().map(str::to_string),
            })
            .unwrap_or_default()
    }

    /// `url` with these credentials.
    fn apply(&self, url: &str) -> Result<String> {
        let mut u = Url::parse(url).map_err(|e| invalid_url(url, &e.to_string()))?;
        if !self.user.is_empty() {
            u.set_username(&self.user)
                .and_then(|()| u.set_password(self.password.as_deref()))
                .map_err(|()| invalid_url(url, "cannot carry credentials"))?;
        }
        Ok(u.to_string())
    }
}

fn invalid_url(url: &str, why: &str) -> Error {
    Error::invalid(Code::InvalidBroker, format!("broker URL {url:?}: {why}"))
}

/// The virtual host an AMQP URL names (its path, percent-decoded; `/` when empty).
pub fn vhost_of(amqp_url: &str) -> String {
    let path = Url::parse(amqp_url)
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(&path)
        .decode_utf8_lossy()
        .into_owned();
    if decoded.is_empty() {
        "/".into()
    } else {
        decoded
    }
}

impl Brokers {
    pub fn new(config: &Config, process_name: &str) -> Self {
        let home = Arc::new(Endpoint {
            id: db::brokers::HOME.into(),
            amqp_url: config.rabbitmq_url.clone(),
            broker: Broker::new(config.rabbitmq_url.clone(), process_name),
            management_url: config.rabbitmq_management_url.clone(),
            vhost: vhost_of(&config.rabbitmq_url),
            mq_broker_arn: config.control.mq_broker_arn.clone(),
            mq_secret_arn: config.control.mq_secret_arn.clone(),
        });
        Self {
            amqp_user: Credentials::of(&config.rabbitmq_url),
            management_user: config
                .rabbitmq_management_url
                .as_deref()
                .map(Credentials::of)
                .unwrap_or_default(),
            process_name: process_name.into(),
            endpoints: RwLock::new(HashMap::from([(home.id.clone(), home.clone())])),
            tenants: RwLock::default(),
            home,
        }
    }

    /// The deployment's own broker.
    pub fn home(&self) -> &Arc<Endpoint> {
        &self.home
    }

    /// The broker the tenant lives on. Read from PostgreSQL once per tenant and process.
    pub async fn for_tenant(&self, pool: &Pool, tenant: TenantId) -> Result<Arc<Endpoint>> {
        if let Some(e) = self.tenants.read().expect("brokers lock").get(&tenant) {
            return Ok(e.clone());
        }
        let record = db::brokers::of_tenant(pool, tenant)
            .await?
            .ok_or(Error::NotFound(Code::TenantNotFound))?;
        let endpoint = self.endpoint(&record)?;
        self.tenants
            .write()
            .expect("brokers lock")
            .insert(tenant, endpoint.clone());
        Ok(endpoint)
    }

    /// Every registered broker (for sampling queue depths: no usage counts are read).
    pub async fn all(&self, pool: &Pool) -> Result<Vec<Arc<Endpoint>>> {
        db::brokers::list(pool)
            .await?
            .iter()
            .map(|b| self.endpoint(b))
            .collect()
    }

    /// The handle on a registry row, made once per broker id. A row's URLs are read when the
    /// handle is made; a changed URL takes effect in processes started after the change.
    pub fn endpoint(&self, record: &BrokerRecord) -> Result<Arc<Endpoint>> {
        if let Some(e) = self.endpoints.read().expect("brokers lock").get(&record.id) {
            return Ok(e.clone());
        }
        let Some(amqp) = record.amqp_url.as_deref() else {
            // Only the home broker has no URL (a CHECK constraint), and it is always present.
            return Ok(self.home.clone());
        };
        let amqp_url = self.amqp_user.apply(amqp)?;
        let endpoint = Arc::new(Endpoint {
            id: record.id.clone(),
            broker: Broker::new(
                amqp_url.clone(),
                format!("{}@{}", self.process_name, record.id),
            ),
            amqp_url,
            management_url: record
                .management_url
                .as_deref()
                .map(|m| self.management_user.apply(m))
                .transpose()?,
            vhost: vhost_of(amqp),
            mq_broker_arn: record.mq_broker_arn.clone(),
            mq_secret_arn: record
                .mq_secret_arn
                .clone()
                .or_else(|| self.home.mq_secret_arn.clone()),
        });
        Ok(self
            .endpoints
            .write()
            .expect("brokers lock")
            .entry(record.id.clone())
            .or_insert(endpoint)
            .clone())
    }

    /// Every broker this process has a handle on.
    pub fn opened(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints
            .read()
            .expect("brokers lock")
            .values()
            .cloned()
            .collect()
    }

    /// Closes every connection (shutdown).
    pub async fn close(&self) {
        for e in self.opened() {
            e.broker.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhosts_are_decoded_from_the_url_path() {
        assert_eq!(vhost_of("amqp://h:5672/%2f"), "/");
        assert_eq!(vhost_of("amqp://h:5672"), "/");
        assert_eq!(vhost_of("amqps://h:5671/tenants-b"), "tenants-b");
        assert_eq!(vhost_of("amqp://h/a%2Fb"), "a/b");
    }

    #[test]
    fn registered_urls_get_the_deployments_credentials() {
        let c = Credentials::of("amqp://svc:s%40cret@home:5672/%2f");
        assert_eq!(
            c.apply("amqps://b-2.mq.example:5671/%2f").unwrap(),
            "amqps://svc:s%40cret@b-2.mq.example:5671/%2f"
        );
        let none = Credentials::of("amqp://home:5672/%2f");
        assert_eq!(none.apply("amqp://b:5672/v").unwrap(), "amqp://b:5672/v");
    }
}
