use std::sync::Arc;

use shared::{AppContext, auth::Authenticator};

#[derive(Clone)]
pub struct ApiState {
    pub ctx: AppContext,
    pub auth: Arc<Authenticator>,
}

impl ApiState {
    pub fn new(ctx: AppContext) -> Self {
        let auth = Arc::new(Authenticator::hs256(&ctx.config.jwt_secret));
        Self { ctx, auth }
    }
}
