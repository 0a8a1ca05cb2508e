use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{TenantId, bounds::IntRange};

/// Reserved concurrency an admin may give a tenant's consumers (Lambda's default account
/// limit is 1000); 0 pauses the tenant.
pub const RESERVED_CONCURRENCY: IntRange = IntRange::new(0, 1000);

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub status: TenantStatus,
    /// The broker its queues live on (the broker registry, `GET /api/v1/brokers`).
    pub broker_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    /// Deleted through the API: kept with its data, refused for publishing.
    Inactive,
}

impl Tenant {
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }
}
