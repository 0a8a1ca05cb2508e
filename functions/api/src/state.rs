use std::sync::Arc;

use shared::{AppContext, auth::Authenticator, control_plane::ControlPlane};

#[derive(Clone)]
pub struct ApiState {
    pub ctx: AppContext,
    pub auth: Arc<Authenticator>,
    /// Applies capacity and consumer changes (`CONTROL_PLANE`: local or aws).
    pub control: Arc<dyn ControlPlane>,
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
        let control = shared::control_plane::from_context(&ctx);
        Ok(Self { ctx, auth, control })
    }
}
