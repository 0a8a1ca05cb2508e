//! A tenant's limits: its own overrides, and the limits in force once the environment defaults
//! fill the rest. Enforcement is the `limits` use case's.

use serde::{Deserialize, Serialize};

use super::bounds::{IntRange, JSON_SAFE_MAX, json_integer_opt};
use crate::{
    config::TenantLimitDefaults,
    error::{Code, Error, Result},
};

/// Messages per second; the token bucket's arithmetic stays exact well beyond it.
pub const MAX_PUBLISH_RATE: f64 = 1_000_000.0;
pub const PUBLISH_BURST: IntRange = IntRange::new(1, i32::MAX as i64);
pub const MAX_QUEUES: IntRange = IntRange::new(0, i32::MAX as i64);
pub const MAX_MESSAGE_BYTES: IntRange = IntRange::new(1, i32::MAX as i64);
pub const MAX_BACKLOG: IntRange = IntRange::new(0, JSON_SAFE_MAX);

/// A tenant's own limits; `None` takes the environment default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitOverrides {
    /// Messages per second, 0 (unlimited) to 1000000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::publish_rate))]
    pub publish_rate: Option<f64>,
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::publish_burst))]
    pub publish_burst: Option<u32>,
    /// 0 is unlimited.
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::max_queues))]
    pub max_queues: Option<u32>,
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::max_message_bytes))]
    pub max_message_bytes: Option<u32>,
    /// 0 is unlimited.
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::max_backlog))]
    pub max_backlog: Option<u64>,
}

/// Each field's schema from its bound; `null` takes the default.
#[cfg(feature = "openapi")]
mod schema {
    use utoipa::openapi::{Object, ObjectBuilder, Type};

    use super::*;
    use crate::domain::bounds::nullable;

    pub fn publish_rate() -> Object {
        nullable(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(MAX_PUBLISH_RATE))
                .build(),
        )
    }
    pub fn publish_burst() -> Object {
        PUBLISH_BURST.nullable_schema()
    }
    pub fn max_queues() -> Object {
        MAX_QUEUES.nullable_schema()
    }
    pub fn max_message_bytes() -> Object {
        MAX_MESSAGE_BYTES.nullable_schema()
    }
    pub fn max_backlog() -> Object {
        MAX_BACKLOG.nullable_schema()
    }
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
        let bad = |field: &str, rule: String| {
            Err(Error::invalid(
                Code::InvalidLimits,
                format!("{field} must be {rule} (or null for the default)"),
            ))
        };
        let within = |r: IntRange| format!("within {}..={}", r.min, r.max);
        if self
            .publish_rate
            .is_some_and(|r| !(0.0..=MAX_PUBLISH_RATE).contains(&r))
        {
            return bad("publish_rate", format!("within 0..={MAX_PUBLISH_RATE}"));
        }
        let ints = [
            (
                "publish_burst",
                self.publish_burst.map(i64::from),
                PUBLISH_BURST,
            ),
            ("max_queues", self.max_queues.map(i64::from), MAX_QUEUES),
            (
                "max_message_bytes",
                self.max_message_bytes.map(i64::from),
                MAX_MESSAGE_BYTES,
            ),
            (
                "max_backlog",
                self.max_backlog
                    .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
                MAX_BACKLOG,
            ),
        ];
        for (field, value, range) in ints {
            if value.is_some_and(|v| !range.contains(v)) {
                return bad(field, within(range));
            }
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
