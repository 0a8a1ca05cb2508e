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
    pub fn new(ctx: AppContext) -> Self {
        let auth = Arc::new(Authenticator::hs256(&ctx.config.jwt_secret));
        let control = shared::control_plane::from_context(&ctx);
        Self { ctx, auth, control }
    }
}
