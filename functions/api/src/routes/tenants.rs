use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use shared::{
    db::control_state::Capacity,
    domain::{Page, Tenant, TenantName, bounds::json_integer_opt, tenant::RESERVED_CONCURRENCY},
    services::limits::{self, LimitOverrides, LimitsView},
    services::retention::{self, RetentionOverrides, RetentionView},
    services::tenants,
};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use super::params::{PageQuery, TenantPath};
use crate::{
    error::ApiResult,
    extract::{JsonBody, QueryParams},
    route,
    scope::{AdminScope, AdminTenantScope, TenantScope},
    state::ApiState,
};

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(route!(list))
        .routes(route!(create))
        .routes(route!(show))
        .routes(route!(deactivate))
        .routes(route!(set_limits))
        .routes(route!(set_retention))
        .routes(route!(set_capacity))
        .routes(route!(show_capacity))
}

/// A tenant with its limits in force and its current usage.
#[derive(Serialize, ToSchema)]
pub(crate) struct TenantView {
    #[serde(flatten)]
    tenant: Tenant,
    #[serde(flatten)]
    limits: LimitsView,
    /// How long its settled messages are kept (see `PUT .../retention`).
    retention: RetentionView,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenant {
    #[schema(value_type = TenantName)]
    name: String,
    /// The broker to put it on (`GET /brokers`; 404 `broker_not_found` if none has this id);
    /// absent: the accepting broker with the most room for queues.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,31}$")]
    broker: Option<String>,
}

/// Create a tenant.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, description = "The new tenant", body = Tenant),
        (status = 404, description = "No broker has the id given"),
        (status = 409, description = "A tenant of that name exists, or no broker has room")))]
async fn create(
    State(s): State<ApiState>,
    _: AdminScope,
    JsonBody(req): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let name = TenantName::parse(&req.name)?;
    let tenant = tenants::create(&s.ctx, &name, req.broker.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// List tenants, newest first.
#[utoipa::path(get, path = "/tenants", tag = "tenants", params(PageQuery),
    responses((status = 200, description = "One page of tenants", body = Page<Tenant>)))]
async fn list(
    State(s): State<ApiState>,
    _: AdminScope,
    QueryParams(q): QueryParams<PageQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    Ok(Json(tenants::list(&s.ctx, &q.page(&s)?).await?))
}

/// Get a tenant.
#[utoipa::path(get, path = "/tenants/{tenant_id}", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "The tenant, its limits in force, its own overrides, its usage and its retention", body = TenantView)))]
async fn show(
    State(s): State<ApiState>,
    TenantScope(id): TenantScope,
) -> ApiResult<Json<TenantView>> {
    let tenant = tenants::get(&s.ctx, id).await?;
    let limits = limits::view(&s.ctx, id).await?;
    let retention = retention::view(&s.ctx, id).await?;
    Ok(Json(TenantView {
        tenant,
        limits,
        retention,
    }))
}

/// Replace the tenant's own retention (admin): how many days its completed messages and its
/// dead letters are kept (0: for ever); a null or absent field takes the default. Messages
/// past it are deleted, with their attempts, by the retention sweep.
#[utoipa::path(put, path = "/tenants/{tenant_id}/retention", tag = "tenants", params(TenantPath),
    request_body = RetentionOverrides,
    responses((status = 200, description = "The tenant's retention now", body = RetentionView),
        (status = 409, description = "The tenant is deactivated")))]
async fn set_retention(
    State(s): State<ApiState>,
    AdminTenantScope(id): AdminTenantScope,
    JsonBody(req): JsonBody<RetentionOverrides>,
) -> ApiResult<Json<RetentionView>> {
    Ok(Json(retention::set(&s.ctx, id, &req).await?))
}

/// Replace the tenant's own limits (admin); a null or absent field takes the default.
#[utoipa::path(put, path = "/tenants/{tenant_id}/limits", tag = "tenants", params(TenantPath),
    request_body = LimitOverrides,
    responses((status = 200, description = "The tenant's limits now", body = LimitsView),
        (status = 409, description = "The tenant is deactivated")))]
async fn set_limits(
    State(s): State<ApiState>,
    AdminTenantScope(id): AdminTenantScope,
    JsonBody(req): JsonBody<LimitOverrides>,
) -> ApiResult<Json<LimitsView>> {
    Ok(Json(limits::set(&s.ctx, id, &req).await?))
}

/// Deactivate a tenant: its consumers are removed; its data stays and every read keeps
/// working (the tenant shows `inactive`), while every change (publishing, configuring,
/// redriving, limits, capacity) answers 409 `tenant_inactive`. Repeating it changes nothing.
#[utoipa::path(delete, path = "/tenants/{tenant_id}", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "The deactivated tenant", body = Tenant)))]
async fn deactivate(
    State(s): State<ApiState>,
    AdminTenantScope(id): AdminTenantScope,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(tenants::deactivate(&s.ctx, id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CapacityRequest {
    /// The tenant's capacity: its own consumer function with this reserved concurrency (the
    /// `dedicated` tier; at most its enabled queues are reserved); `null` returns it to the
    /// `pooled` tier (the shared consumer function, nothing reserved).
    #[serde(default, deserialize_with = "json_integer_opt")]
    #[schema(schema_with = reserved_concurrency_schema)]
    reserved_concurrency: Option<i64>,
}

fn reserved_concurrency_schema() -> utoipa::openapi::Object {
    RESERVED_CONCURRENCY.nullable_schema()
}

/// Set the tenant's capacity (admin) and ask the control plane to apply it; the answer is
/// the state after the request (applied at once locally, `pending` until the provisioner ran
/// in AWS). A capacity is checked against the account's concurrency budget first: one that
/// would leave the account less than 100 unreserved concurrency answers 409
/// `concurrency_budget_exceeded` with the figures (`error.budget`), and nothing is stored or
/// applied. Lowering a capacity is never refused.
#[utoipa::path(put, path = "/tenants/{tenant_id}/capacity", tag = "tenants", params(TenantPath),
    request_body = CapacityRequest,
    responses((status = 200, description = "The tier with requested, effective and applied capacity", body = Capacity),
        (status = 409, description = "Over the account's concurrency budget (`concurrency_budget_exceeded`, with `error.budget`), or the tenant is deactivated")))]
async fn set_capacity(
    State(s): State<ApiState>,
    AdminTenantScope(id): AdminTenantScope,
    JsonBody(req): JsonBody<CapacityRequest>,
) -> ApiResult<Json<Capacity>> {
    Ok(Json(
        tenants::set_capacity(&s.ctx, id, req.reserved_concurrency).await?,
    ))
}

/// The tenant's tier (`pooled` or `dedicated`) with its requested, effective and applied
/// capacity.
#[utoipa::path(get, path = "/tenants/{tenant_id}/capacity", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "The tier with requested, effective and applied capacity", body = Capacity)))]
async fn show_capacity(
    State(s): State<ApiState>,
    TenantScope(id): TenantScope,
) -> ApiResult<Json<Capacity>> {
    Ok(Json(tenants::capacity(&s.ctx, id).await?))
}
