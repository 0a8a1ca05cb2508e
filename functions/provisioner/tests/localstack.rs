//! Provisioner jobs against LocalStack's Lambda and SQS (scripts/localstack.sh starts it) and
//! the real PostgreSQL. LocalStack cannot emulate Amazon MQ, so mappings are `unsupported`.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_lambda::{
    config::{BehaviorVersion, Credentials, Region},
    primitives::Blob,
    types::FunctionCode,
};
use provisioner::{batch::handle_sqs, jobs::Provisioner};
use shared::{
    Error,
    control_plane::Job,
    domain::{ConsumerConfigUpdate, TenantId, TenantName, Tier},
    testkit::{context, own_database, test_config, unique},
};

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

fn creds() -> Credentials {
    Credentials::new("test", "test", None, None, "test")
}

fn lambda() -> aws_sdk_lambda::Client {
    let conf = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds())
        .build();
    aws_sdk_lambda::Client::from_conf(conf)
}

fn sqs() -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

/// A provisioner whose template is a fresh placeholder function in LocalStack.
async fn provisioner() -> Provisioner {
    provisioner_on(test_config()).await
}

/// [`provisioner`] on `config` (a database of the test's own, for the budget).
async fn provisioner_on(mut config: shared::Config) -> Provisioner {
    let lambda = lambda();
    let template = unique("template");
    lambda
        .create_function()
        .function_name(&template)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role("arn:aws:iam::000000000000:role/msgsvc-consumer")
        .memory_size(256)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(placeholder_zip()))
                .build(),
        )
        .send()
        .await
        .expect("create template function in LocalStack");
    config.control.pooled_function = template.clone();
    config.control.function_template = template;
    config.control.mq_broker_arn = None;
    let ctx = if config.database_url == test_config().database_url {
        context(config, "provisioner-test").await
    } else {
        shared::AppContext::new(config, "provisioner-test").unwrap()
    };
    Provisioner::new(ctx, lambda)
}

/// A zip with one file (LocalStack only stores it; it cannot run functions without Docker).
fn placeholder_zip() -> Vec<u8> {
    // A stored (uncompressed) zip of an empty file named "bootstrap".
    let name = b"bootstrap";
    let mut local = vec![0x50, 0x4b, 0x03, 0x04, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    local.extend_from_slice(&[0; 12]); // crc, sizes
    local.extend_from_slice(&(name.len() as u16).to_le_bytes());
    local.extend_from_slice(&[0, 0]);
    local.extend_from_slice(name);
    let mut central = vec![0x50, 0x4b, 0x01, 0x02, 20, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    central.extend_from_slice(&[0; 12]);
    central.extend_from_slice(&(name.len() as u16).to_le_bytes());
    central.extend_from_slice(&[0; 12]); // extra, comment, disk, attrs
    central.extend_from_slice(&0u32.to_le_bytes()); // offset of the local header
    central.extend_from_slice(name);
    let mut zip = local.clone();
    zip.extend_from_slice(&central);
    zip.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0]);
    zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
    zip.extend_from_slice(&(local.len() as u32).to_le_bytes());
    zip.extend_from_slice(&[0, 0]);
    zip
}

async fn reserved(p: &Provisioner, function: &str) -> Option<i32> {
    p.lambda
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
        .expect("GetFunctionConcurrency")
        .reserved_concurrent_executions
}

async fn exists(p: &Provisioner, function: &str) -> bool {
    match p.lambda.get_function().function_name(function).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => panic!("GetFunction {function}: {e:?}"),
    }
}

async fn configure(p: &Provisioner, tenant: TenantId, queue: &str, workers: i64) {
    let update = ConsumerConfigUpdate::parse(
        queue,
        workers,
        None,
        None,
        None,
        None,
        &p.ctx.config.consumer,
    )
    .unwrap();
    shared::services::consumers::configure(&p.ctx, tenant, &update)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pooled_tenant_has_no_function_and_a_dedicated_one_reserves_its_effective_capacity() {
    let p = provisioner().await;
    let tenant =
        shared::services::tenants::create(&p.ctx, &TenantName::parse(&unique("prov")).unwrap())
            .await
            .unwrap();
    let id = tenant.id;
    let function = p.function_name(id);

    // Pooled: onboarding maps its queues to the pooled function; no function of its own.
    let onboard = Job::OnboardTenant { tenant_id: id };
    p.run(&onboard).await.expect("onboard");
    p.run(&onboard).await.expect("onboard again");
    assert!(
        !exists(&p, &function).await,
        "a pooled tenant has no function"
    );
    let capacity = shared::services::tenants::capacity(&p.ctx, id)
        .await
        .unwrap();
    assert_eq!(capacity.tier, Tier::Pooled);
    assert_eq!(
        (
            capacity.function_name.as_deref(),
            capacity.applied_concurrency,
            capacity.state.as_str()
        ),
        (Some(p.pooled_function()), None, "applied")
    );

    // Dedicated: its own function, reserving the effective capacity: 3 asked, 2 queues.
    configure(&p, id, "orders", 2).await;
    shared::services::tenants::set_capacity(&p.ctx, id, Some(3))
        .await
        .unwrap();
    let scale = Job::ScaleTenant { tenant_id: id };
    p.run(&scale).await.expect("scale");
    // A duplicate delivery finds everything in place.
    p.run(&scale).await.expect("scale again");
    let conf = p
        .lambda
        .get_function()
        .function_name(&function)
        .send()
        .await
        .unwrap()
        .configuration
        .unwrap();
    assert_eq!(
        conf.memory_size,
        Some(256),
        "settings copied from the template"
    );
    assert_eq!(reserved(&p, &function).await, Some(2));
    let status = shared::services::consumers::status(&p.ctx, Some(id))
        .await
        .unwrap();
    let capacity = status[0].capacity.as_ref().unwrap();
    assert_eq!(status[0].tier, Tier::Dedicated);
    assert_eq!(
        (
            capacity.desired_concurrency,
            capacity.effective_concurrency,
            capacity.applied_concurrency,
            capacity.function_name.as_deref(),
            capacity.state.as_str(),
        ),
        (
            Some(3),
            Some(2),
            Some(2),
            Some(function.as_str()),
            "applied"
        )
    );
    let mapping = status[0].mapping.as_ref().expect("mapping state recorded");
    assert_eq!(mapping.state, "unsupported");
    assert!(mapping.error.as_deref().unwrap().contains("MQ_BROKER_ARN"));

    // A paused queue lowers what can run, and so what is reserved.
    configure(&p, id, "orders", 0).await;
    let apply = Job::ApplyConsumer {
        tenant_id: id,
        queue_name: "orders".into(),
    };
    p.run(&apply).await.expect("apply consumer");
    assert_eq!(reserved(&p, &function).await, Some(1));

    // Back to pooled (DeleteFunction) is not run here: LocalStack without Docker leaves
    // functions in state Failed and answers DeleteFunction on them with an InternalError.
}

#[tokio::test]
async fn a_capacity_over_the_budget_reaches_no_aws_api() {
    // An account of 150 on a database of the test's own: 50 for tenants.
    let mut config = own_database("prov_budget").await;
    config.control.account_concurrency = Some(150);
    let own = config.clone();
    let p = provisioner_on(config).await;
    let tenant =
        shared::services::tenants::create(&p.ctx, &TenantName::parse(&unique("budget")).unwrap())
            .await
            .unwrap();
    let id = tenant.id;
    let refused = shared::services::tenants::set_capacity(&p.ctx, id, Some(51))
        .await
        .unwrap_err();
    let Error::BudgetExceeded(budget) = &refused else {
        panic!("not a budget refusal: {refused:?}");
    };
    assert_eq!((budget.available, budget.requested), (50, 51));
    // Nothing stored as desired, so even a job arriving now creates no function.
    p.run(&Job::OnboardTenant { tenant_id: id }).await.unwrap();
    p.run(&Job::ScaleTenant { tenant_id: id }).await.unwrap();
    assert!(!exists(&p, &p.function_name(id)).await);
    let capacity = shared::services::tenants::capacity(&p.ctx, id)
        .await
        .unwrap();
    assert_eq!(
        (capacity.tier, capacity.desired_concurrency),
        (Tier::Pooled, None)
    );
    drop(p);
    shared::db::drop_database(&own).await.unwrap();
}

#[tokio::test]
async fn the_account_limit_is_read_from_get_account_settings() {
    let config = own_database("prov_account").await;
    let own = config.clone();
    let mut config = config;
    config.control.account_concurrency = None;
    let p = provisioner_on(config).await;
    let reading = p
        .refresh_account_limit()
        .await
        .expect("GetAccountSettings read and stored");
    let settings = p.lambda.get_account_settings().send().await.unwrap();
    let limit = settings.account_limit.unwrap();
    assert_eq!(
        reading.concurrent_executions as i32,
        limit.concurrent_executions
    );
    let client = p.ctx.db.get().await.unwrap();
    let budget = shared::services::capacity::budget(&client, &p.ctx.config, None, 0)
        .await
        .unwrap();
    assert_eq!(
        (budget.account_limit as i32, budget.account_limit_source),
        (limit.concurrent_executions, "aws")
    );
    drop(client);
    drop(p);
    shared::db::drop_database(&own).await.unwrap();
}

#[tokio::test]
async fn a_failing_job_reaches_the_dlq_without_blocking_the_others() {
    let p = provisioner().await;
    let sqs = sqs();
    let dlq = sqs
        .create_queue()
        .queue_name(unique("control-dlq"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name(unique("control"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"1"}}"#),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    let tenant =
        shared::services::tenants::create(&p.ctx, &TenantName::parse(&unique("dlq")).unwrap())
            .await
            .unwrap();
    let good = serde_json::to_string(&Job::ScaleTenant {
        tenant_id: tenant.id,
    })
    .unwrap();
    let bad = r#"{"kind":"apply_consumer","tenant_id":"00000000-0000-0000-0000-000000000000","queue_name":"nope"}"#;
    for body in [good.as_str(), bad] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    // Play Lambda's SQS trigger: receive, invoke, delete what succeeded.
    let mut received = Vec::new();
    while received.len() < 2 {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        received.extend(out.messages.unwrap_or_default());
    }
    let mut event = SqsEvent::default();
    for m in &received {
        let mut msg = SqsMessage::default();
        msg.message_id = m.message_id.clone();
        msg.body = m.body.clone();
        event.records.push(msg);
    }
    let response = handle_sqs(&p, event).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed.len(), 1, "only the bad job fails");
    for m in &received {
        if !failed.contains(m.message_id.as_ref().unwrap()) {
            sqs.delete_message()
                .queue_url(&queue)
                .receipt_handle(m.receipt_handle.clone().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(
        shared::services::tenants::capacity(&p.ctx, tenant.id)
            .await
            .unwrap()
            .state,
        "applied",
        "the good job ran"
    );

    // Received once already (maxReceiveCount 1): the next receive moves it to the DLQ.
    let mut dead = Vec::new();
    for _ in 0..20 {
        sqs.receive_message()
            .queue_url(&queue)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let out = sqs
            .receive_message()
            .queue_url(&dlq)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        dead.extend(out.messages.unwrap_or_default());
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.as_deref(), Some(bad));
}
