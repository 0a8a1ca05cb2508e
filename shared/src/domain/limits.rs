//! A tenant's limits: its own overrides, and the limits in force once the environment defaults
//! fill the rest. Enforcement is the `limits` use case's.

use serde::{Deserialize, Serialize};

use crate::{
    config::TenantLimitDefaults,
    error::{Code, Error, Result},
};

/// A tenant's own limits; `None` takes the environment default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitOverrides {
    #[serde(default)]
    pub publish_rate: Option<f64>,
    #[serde(default)]
    pub publish_burst: Option<u32>,
    #[serde(default)]
    pub max_queues: Option<u32>,
    #[serde(default)]
    pub max_message_bytes: Option<u32>,
    #[serde(default)]
    pub max_backlog: Option<u64>,
}

/// The limits in force for a tenant. 0 means unlimited for rate, queues and backlog.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectiveLimits {
    pub publish_rate: f64,
    pub publish_burst: u32,
    pub max_queues: u32,
    pub max_message_bytes: u32,
    pub max_backlog: u64,
}

/// What the cache keeps per tenant.
#[derive(Clone, Debug)]
pub struct TenantStanding {
    pub active: bool,
    pub overrides: LimitOverrides,
}

impl LimitOverrides {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, rule: &str| {
            Err(Error::invalid(
                Code::InvalidLimits,
                format!("{field} must be {rule} (or null for the default)"),
            ))
        };
        if self.publish_rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
            return bad("publish_rate", "0 (unlimited) or more");
        }
        if self.publish_burst == Some(0) {
            return bad("publish_burst", "at least 1");
        }
        if self.publish_burst.is_some_and(|b| b > i32::MAX as u32) {
            return bad("publish_burst", "at most 2147483647");
        }
        if self.max_queues.is_some_and(|b| b > i32::MAX as u32) {
            return bad("max_queues", "at most 2147483647");
        }
        if self
            .max_message_bytes
            .is_some_and(|b| b == 0 || b > i32::MAX as u32)
        {
            return bad("max_message_bytes", "within 1..=2147483647");
        }
        if self.max_backlog.is_some_and(|b| b > i64::MAX as u64) {
            return bad("max_backlog", "at most 9223372036854775807");
        }
        Ok(())
    }

    pub fn resolve(&self, d: &TenantLimitDefaults) -> EffectiveLimits {
        EffectiveLimits {
            publish_rate: self.publish_rate.unwrap_or(d.publish_rate),
            publish_burst: self.publish_burst.unwrap_or(d.publish_burst),
            max_queues: self.max_queues.unwrap_or(d.max_queues),
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
            max_backlog: self.max_backlog.unwrap_or(d.max_backlog),
        }
    }
}
