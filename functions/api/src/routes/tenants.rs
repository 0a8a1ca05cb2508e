use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, put},
};
use serde::{Deserialize, Serialize};
use shared::{
    domain::{Page, PageRequest, Tenant, TenantId, TenantName},
    limits::{self, LimitOverrides, LimitsView},
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
        .route("/tenants/{tenant_id}/limits", put(set_limits))
}

/// A tenant with its limits in force and its current usage.
#[derive(Serialize)]
struct TenantView {
    #[serde(flatten)]
    tenant: Tenant,
    #[serde(flatten)]
    limits: LimitsView,
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
) -> ApiResult<Json<TenantView>> {
    let id: TenantId = id.parse()?;
    caller.require_tenant(id)?;
    let tenant = tenants::get(&s.ctx, id).await?;
    let limits = limits::view(&s.ctx, id).await?;
    Ok(Json(TenantView { tenant, limits }))
}

/// Replaces the tenant's own limits (admin); a null or absent field takes the default.
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

async fn deactivate(
    State(s): State<ApiState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Tenant>> {
    caller.require_admin()?;
    let id: TenantId = id.parse()?;
    Ok(Json(tenants::deactivate(&s.ctx, id).await?))
}
