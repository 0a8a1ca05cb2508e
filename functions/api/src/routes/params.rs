//! Path and query parameters several resources share.

use serde::Deserialize;
use shared::domain::PageRequest;
use utoipa::IntoParams;

use crate::state::ApiState;

/// The `{tenant_id}` path parameter, for the document; [`crate::scope`] reads and checks it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct TenantPath {
    /// The tenant's id (a UUID).
    tenant_id: uuid::Uuid,
}

/// The `{tenant_id}` and `{message_id}` path parameters.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct MessagePath {
    /// The tenant's id (a UUID).
    tenant_id: uuid::Uuid,
    /// The message's id (a UUID).
    message_id: uuid::Uuid,
}

/// `{message_id}` as handlers read it (the tenant comes from the scope); parsed by the handler
/// so that a malformed id gets its own error code.
#[derive(Deserialize)]
pub(crate) struct MessageIdParam {
    pub message_id: String,
}

/// The `{tenant_id}` and `{queue_name}` path parameters.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct QueuePath {
    /// The tenant's id (a UUID).
    tenant_id: uuid::Uuid,
    /// The queue's name.
    #[param(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    queue_name: String,
}

/// `{queue_name}` as handlers read it.
#[derive(Deserialize)]
pub(crate) struct QueueNameParam {
    pub queue_name: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page size, 1 to `API_MAX_PAGE_SIZE` (default 50).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self, s: &ApiState) -> shared::Result<PageRequest> {
        PageRequest::parse(
            self.limit,
            self.cursor.as_deref(),
            s.ctx.config.limits.max_page_size,
        )
    }
}
