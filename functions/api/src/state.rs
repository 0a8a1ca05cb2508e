use std::sync::Arc;

use axum::body::Bytes;
use shared::{AppContext, auth::Authenticator};

#[derive(Clone)]
pub struct ApiState {
    pub ctx: AppContext,
    pub auth: Arc<Authenticator>,
    /// The OpenAPI document with this deployment's bounds, serialised once.
    pub document: Bytes,
}

impl ApiState {
    /// Panics on an unreadable key configuration; `try_new` reports it instead.
    pub fn new(ctx: AppContext) -> Self {
        Self::try_new(ctx).expect("JWT key configuration")
    }

    pub fn try_new(ctx: AppContext) -> anyhow::Result<Self> {
        let auth = Arc::new(Authenticator::from_config(
            &ctx.config.jwt_secret,
            &ctx.config.jwt,
        )?);
        let document = crate::openapi::document_bytes(&ctx.config);
        Ok(Self {
            ctx,
            auth,
            document,
        })
    }
}
