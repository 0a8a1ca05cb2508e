//! How long a tenant's settled messages are kept: its own settings, and the retention in force
//! once the configuration's defaults (`RETENTION_*_DAYS`) fill the rest. The sweep that
//! enforces it is `services::retention::sweep`.

use serde::{Deserialize, Serialize};

use super::bounds::{IntRange, json_integer_opt};
use crate::{
    config::RetentionConfig,
    error::{Code, Error, Result},
};

/// Days a completed or dead-lettered message is kept; 0 keeps it for ever. Ten years at most.
pub const RETENTION_DAYS: IntRange = IntRange::new(0, 3650);

/// A tenant's own retention; `None` takes the configuration's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionOverrides {
    /// Days a completed message is kept after it completed; 0 keeps it for ever.
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[cfg_attr(feature = "openapi", schema(schema_with = days_schema))]
    pub completed_days: Option<u32>,
    /// Days a dead-lettered message is kept after it was dead-lettered; 0 keeps it for ever.
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[cfg_attr(feature = "openapi", schema(schema_with = days_schema))]
    pub dead_lettered_days: Option<u32>,
}

#[cfg(feature = "openapi")]
fn days_schema() -> utoipa::openapi::Object {
    RETENTION_DAYS.nullable_schema()
}

/// Days in force: within the same bound, never null.
#[cfg(feature = "openapi")]
pub fn days_in_force_schema() -> utoipa::openapi::Object {
    RETENTION_DAYS.schema()
}

/// The retention in force for a tenant. 0 keeps messages of that status for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectiveRetention {
    pub completed_days: u32,
    pub dead_lettered_days: u32,
}

impl RetentionOverrides {
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("completed_days", self.completed_days),
            ("dead_lettered_days", self.dead_lettered_days),
        ] {
            if value.is_some_and(|v| !RETENTION_DAYS.contains(i64::from(v))) {
                return Err(Error::invalid(
                    Code::InvalidRetention,
                    format!(
                        "{field} must be within {}..={} days (or null for the default)",
                        RETENTION_DAYS.min, RETENTION_DAYS.max
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn resolve(&self, d: &RetentionConfig) -> EffectiveRetention {
        EffectiveRetention {
            completed_days: self.completed_days.unwrap_or(d.completed_days),
            dead_lettered_days: self.dead_lettered_days.unwrap_or(d.dead_lettered_days),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_defaults() {
        let ok = RetentionOverrides {
            completed_days: Some(0),
            dead_lettered_days: Some(3650),
        };
        assert!(ok.validate().is_ok());
        let too_long = RetentionOverrides {
            completed_days: Some(3651),
            dead_lettered_days: None,
        };
        assert!(too_long.validate().is_err());
        let d = RetentionConfig {
            completed_days: 7,
            dead_lettered_days: 30,
            batch: 1000,
            max_batches: 10,
        };
        let partial = RetentionOverrides {
            completed_days: Some(1),
            dead_lettered_days: None,
        };
        assert_eq!(
            partial.resolve(&d),
            EffectiveRetention {
                completed_days: 1,
                dead_lettered_days: 30
            }
        );
        let bad: std::result::Result<RetentionOverrides, _> =
            serde_json::from_value(serde_json::json!({"completed_days": 1.5}));
        assert!(bad.is_err());
    }
}
