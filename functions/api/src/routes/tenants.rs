use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use shared::{
    db::control_state::Capacity,
    domain::{Page, PageRequest, Tenant, TenantId, TenantName},
    services::limits::{self, LimitOverrides, LimitsView},
    services::tenants,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::ApiResult,
    extract::{Caller, JsonBody, PathParams, QueryParams},
    state::ApiState,
};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, deactivate))
        .routes(routes!(set_limits))
        .routes(routes!(set_capacity, show_capacity))
}

/// A tenant with its limits in force and its current usage.
#[derive(Serialize, ToSchema)]
pub(crate) struct TenantView {
    #[serde(flatten)]
    tenant: Tenant,
    #[serde(flatten)]
    limits: LimitsView,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenant {
    /// 1-100 characters after trimming, no control characters; unique case-insensitively.
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// Create a tenant.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, description = "The new tenant", body = Tenant)))]
async fn create(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    JsonBody(req): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    caller.require_admin()?;
    let name = TenantName::parse(&req.name)?;
    let tenant = tenants::create(&s.ctx, &name).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
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

/// List tenants, newest first.
#[utoipa::path(get, path = "/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, description = "One page of tenants", body = Page<Tenant>)))]
async fn list(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    caller.require_admin()?;
    Ok(Json(tenants::list(&s.ctx, &q.page(&s)?).await?))
}

/// Get a tenant.
#[utoipa::path(get, path = "/tenants/{tenant_id}", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "The tenant, its limits in force, its own overrides and its usage", body = TenantView)))]
async fn show(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<TenantView>> {
    let id: TenantId = id.parse()?;
    caller.require_tenant(id)?;
    let tenant = tenants::get(&s.ctx, id).await?;
    let limits = limits::view(&s.ctx, id).await?;
    Ok(Json(TenantView { tenant, limits }))
}

/// Replace the tenant's own limits (admin); a null or absent field takes the default.
#[utoipa::path(put, path = "/tenants/{tenant_id}/limits", tag = "tenants", params(TenantPath),
    request_body = LimitOverrides,
    responses((status = 200, description = "The tenant's limits now", body = LimitsView)))]
async fn set_limits(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<LimitOverrides>,
) -> ApiResult<Json<LimitsView>> {
    caller.require_admin()?;
    let id: TenantId = id.parse()?;
    Ok(Json(limits::set(&s.ctx, id, &req).await?))
}

/// Deactivate a tenant: kept with its data, refused for publishing.
#[utoipa::path(delete, path = "/tenants/{tenant_id}", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "The deactivated tenant", body = Tenant)))]
async fn deactivate(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Tenant>> {
    caller.require_admin()?;
    let id: TenantId = id.parse()?;
    Ok(Json(tenants::deactivate(&s.ctx, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapacityRequest {
    /// Reserved concurrency of the tenant's consumers, 0 to 1000; `null` returns the tenant to
    /// the deployment default.
    #[schema(minimum = 0, maximum = 1000)]
    reserved_concurrency: Option<i64>,
}

/// Set the tenant's capacity (admin) and ask the control plane to apply it; the answer is
/// the state after the request (applied at once locally, `pending` until the provisioner ran
/// in AWS).
#[utoipa::path(put, path = "/tenants/{tenant_id}/capacity", tag = "tenants", params(TenantPath),
    request_body = CapacityRequest,
    responses((status = 200, description = "Desired and applied capacity", body = Capacity)))]
async fn set_capacity(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<CapacityRequest>,
) -> ApiResult<Json<Capacity>> {
    caller.require_admin()?;
    let id: TenantId = id.parse()?;
    Ok(Json(
        tenants::set_capacity(&s.ctx, id, req.reserved_concurrency).await?,
    ))
}

/// The tenant's desired and applied capacity.
#[utoipa::path(get, path = "/tenants/{tenant_id}/capacity", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "Desired and applied capacity", body = Capacity)))]
async fn show_capacity(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Capacity>> {
    let id: TenantId = id.parse()?;
    caller.require_tenant(id)?;
    Ok(Json(tenants::capacity(&s.ctx, id).await?))
}

/// The `{tenant_id}` path parameter, for the document (handlers parse it themselves so that a
/// malformed id gets its own error code).
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
