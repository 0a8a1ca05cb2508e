//! Who may call a route, said once: by the scope extractor its handler takes. Each extractor
//! authenticates the bearer token, reads the path, authorises, and hands the handler a value it
//! can only have if the caller may act there. The OpenAPI document reads the same extractors
//! (see [`crate::contract`]), so the document and the check cannot disagree.

use axum::{
    extract::{FromRequestParts, RawPathParams},
    http::request::Parts,
};
use shared::{Error, auth::Principal, domain::TenantId, error::Code};

use crate::{error::ApiError, state::ApiState};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    /// An admin token.
    Admin,
    /// An admin token, or a tenant token of the tenant in the path.
    Tenant,
}

/// A route for admins only. 401 without a valid token, 403 for a tenant token.
pub struct AdminScope(pub Principal);

/// A route on the tenant in the path (`{tenant_id}`), open to admins and to that tenant's own
/// tokens. 401 without a valid token, 400 for a malformed id, 403 for another tenant's token.
pub struct TenantScope(pub TenantId);

/// An admin-only route on the tenant in the path. 401 without a valid token, 403 for a tenant
/// token (before the id is read), 400 for a malformed id.
pub struct AdminTenantScope(pub TenantId);

async fn authenticate(parts: &Parts, state: &ApiState) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    Ok(state.auth.verify_header(header).await?)
}

async fn tenant_in_path(parts: &mut Parts, state: &ApiState) -> Result<TenantId, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|r| ApiError(Error::invalid(Code::InvalidPath, r.body_text())))?;
    let raw = params
        .iter()
        .find(|(name, _)| *name == "tenant_id")
        .map(|(_, value)| value)
        .ok_or_else(|| ApiError(Error::invalid(Code::InvalidPath, "no tenant in the path")))?;
    Ok(raw.parse()?)
}

impl FromRequestParts<ApiState> for AdminScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        caller.require_admin()?;
        Ok(AdminScope(caller))
    }
}

impl FromRequestParts<ApiState> for TenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let caller = authenticate(parts, state).await?;
        let tenant = tenant_in_path(parts, state).await?;
        caller.require_tenant(tenant)?;
        Ok(TenantScope(tenant))
    }
}

impl FromRequestParts<ApiState> for AdminTenantScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        authenticate(parts, state).await?.require_admin()?;
        Ok(AdminTenantScope(tenant_in_path(parts, state).await?))
    }
}
