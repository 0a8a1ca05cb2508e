//! The AWS control plane: jobs go to the control SQS queue (`CONTROL_QUEUE_URL`); the
//! provisioner function executes them. The endpoint follows `AWS_ENDPOINT_URL` (LocalStack).

use tokio::sync::OnceCell;

use super::{ControlPlane, Job};
use crate::{
    AppContext,
    error::{Error, Result},
};

pub struct SqsControlPlane {
    queue_url: String,
    client: OnceCell<aws_sdk_sqs::Client>,
}

impl SqsControlPlane {
    pub fn new(queue_url: String) -> Self {
        Self {
            queue_url,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_sqs::Client {
        self.client
            .get_or_init(|| async { aws_sdk_sqs::Client::new(&aws_config::load_from_env().await) })
            .await
    }
}

#[async_trait::async_trait]
impl ControlPlane for SqsControlPlane {
    async fn submit(&self, _ctx: &AppContext, job: Job) -> Result<()> {
        let body = serde_json::to_string(&job).map_err(|e| Error::Internal(e.into()))?;
        self.client()
            .await
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("SQS SendMessage: {e:?}")))?;
        Ok(())
    }
}
