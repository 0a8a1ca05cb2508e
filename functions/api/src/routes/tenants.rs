use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, put},
};
use serde::Deserialize;
use shared::{
    control_plane::{self, Job},
    db::control_state::Capacity,
    domain::{Page, PageRequest, Tenant, TenantId, TenantName},
    tenants,
};

use crate::{
    error::ApiResult,
    extract::{Caller, JsonBody, PathParams, QueryParams},
    state::ApiState,
};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/tenants", get(list).post(create))
        .route("/tenants/{tenant_id}", get(show).delete(deactivate))
        .route(
            "/tenants/{tenant_id}/capacity",
            put(set_capacity).get(show_capacity),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
}

async fn create(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    JsonBody(req): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    caller.require_admin()?;
    let name = TenantName::parse(&req.name)?;
    let tenant = tenants::create(&s.ctx, &name).await?;
    let job = Job::OnboardTenant {
        tenant_id: tenant.id,
    };
    control_plane::request(s.control.as_ref(), job).await;
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    pub limit: Option<u32>,
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

async fn list(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    caller.require_admin()?;
    Ok(Json(tenants::list(&s.ctx, &q.page(&s)?).await?))
}

async fn show(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Tenant>> {
    let id: TenantId = id.parse()?;
    caller.require_tenant(id)?;
    Ok(Json(tenants::get(&s.ctx, id).await?))
}

async fn deactivate(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Tenant>> {
    caller.require_admin()?;
    let id: TenantId = id.parse()?;
    let tenant = tenants::deactivate(&s.ctx, id).await?;
    control_plane::request(s.control.as_ref(), Job::DeleteTenant { tenant_id: id }).await;
    Ok(Json(tenant))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityRequest {
    /// `null` returns the tenant to the deployment default.
    reserved_concurrency: Option<i64>,
}

/// Sets the tenant's capacity (admin) and asks the control plane to apply it; the answer is
/// the state after the request (applied at once locally, `pending` until the provisioner ran
/// in AWS).
async fn set_capacity(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<CapacityRequest>,
) -> ApiResult<Json<Capacity>> {
    caller.require_admin()?;
    let id: TenantId = id.parse()?;
    tenants::set_capacity(&s.ctx, id, req.reserved_concurrency).await?;
    control_plane::request(s.control.as_ref(), Job::ScaleTenant { tenant_id: id }).await;
    Ok(Json(tenants::capacity(&s.ctx, id).await?))
}

async fn show_capacity(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Capacity>> {
    let id: TenantId = id.parse()?;
    caller.require_tenant(id)?;
    Ok(Json(tenants::capacity(&s.ctx, id).await?))
}
