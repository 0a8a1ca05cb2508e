use std::sync::Arc;

use shared::{AppContext, auth::Authenticator};

#[derive(Clone)]
pub struct ApiState {
    pub ctx: AppContext,
    pub auth: Arc<Authenticator>,
}

impl ApiState {
    /// Fails when configured key files cannot be read.
    pub fn new(ctx: AppContext) -> anyhow::Result<Self> {
        let auth = Arc::new(Authenticator::from_config(&ctx.config, ctx.http.clone())?);
        Ok(Self { ctx, auth })
    }
}
