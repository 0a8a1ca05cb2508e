//! Path and query parameters several resources share.

use std::borrow::Cow;

use serde::Deserialize;
use shared::domain::{PageRequest, page::CURSOR_PATTERN};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type},
};

use crate::{deployment::PageLimit, state::ApiState};

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
    #[param(value_type = shared::domain::QueueName)]
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
    #[param(value_type = Option<PageLimit>)]
    pub limit: Option<u32>,
    #[param(value_type = Option<Cursor>)]
    pub cursor: Option<String>,
}

/// A page cursor, as [`PageRequest::parse`] reads it.
pub(crate) struct Cursor;

impl PartialSchema for Cursor {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(CURSOR_PATTERN))
            .description(Some(
                "`next_cursor` of the previous page (opaque); empty for the first page",
            ))
            .into()
    }
}

impl ToSchema for Cursor {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Cursor")
    }
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
