//! Provisioner jobs against LocalStack's Lambda and SQS (scripts/localstack.sh starts it) and
//! the real PostgreSQL. LocalStack cannot emulate Amazon MQ, so mappings are `unsupported`.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_lambda::{
    config::{BehaviorVersion, Credentials, Region},
    primitives::Blob,
    types::FunctionCode,
};
use provisioner::{batch::handle_sqs, jobs::Provisioner, rollout::Outcome};
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
    let tenant = shared::services::tenants::create(
        &p.ctx,
        &TenantName::parse(&unique("prov")).unwrap(),
        None,
    )
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
    let tenant = shared::services::tenants::create(
        &p.ctx,
        &TenantName::parse(&unique("budget")).unwrap(),
        None,
    )
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

    let tenant = shared::services::tenants::create(
        &p.ctx,
        &TenantName::parse(&unique("dlq")).unwrap(),
        None,
    )
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

/// A deployment of its own: tenant functions named `r<8 hex>-<tenant>`, so a rollout or a
/// reconcile in this test touches only this test's functions.
fn own_prefix(config: &mut shared::Config) {
    config.control.function_prefix = format!("r{}-", &unique("x")[2..10]);
}

/// A zip whose only file, `bootstrap`, holds `content` (stored, CRC computed), so each
/// version of the template has its own CodeSha256.
fn zip_with(content: &[u8]) -> Vec<u8> {
    let crc = {
        let mut c = 0xffff_ffffu32;
        for &b in content {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    };
    let name = b"bootstrap";
    let size = (content.len() as u32).to_le_bytes();
    let mut local = vec![0x50, 0x4b, 0x03, 0x04, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    local.extend_from_slice(&crc.to_le_bytes());
    local.extend_from_slice(&size);
    local.extend_from_slice(&size);
    local.extend_from_slice(&(name.len() as u16).to_le_bytes());
    local.extend_from_slice(&[0, 0]);
    local.extend_from_slice(name);
    local.extend_from_slice(content);
    let mut central = vec![0x50, 0x4b, 0x01, 0x02, 20, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    central.extend_from_slice(&crc.to_le_bytes());
    central.extend_from_slice(&size);
    central.extend_from_slice(&size);
    central.extend_from_slice(&(name.len() as u16).to_le_bytes());
    central.extend_from_slice(&[0; 12]);
    central.extend_from_slice(&0u32.to_le_bytes());
    central.extend_from_slice(name);
    let mut zip = local.clone();
    zip.extend_from_slice(&central);
    zip.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0]);
    zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
    zip.extend_from_slice(&(local.len() as u32).to_le_bytes());
    zip.extend_from_slice(&[0, 0]);
    zip
}

async fn function_conf(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
) -> aws_sdk_lambda::types::FunctionConfiguration {
    lambda
        .get_function()
        .function_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetFunction {name}: {e:?}"))
        .configuration
        .unwrap()
}

/// Tenant functions follow the template: after a deploy changes the template's code and
/// environment (and memory), a rollout brings each tenant function's CodeSha256 and settings
/// to the template's, and a second rollout sends nothing.
///
/// LocalStack without Docker cannot run functions, so every function it holds is `Failed`;
/// UpdateFunctionCode and UpdateFunctionConfiguration on such a function store the change but
/// answer `InternalError` ("cannot be updated if an old one is not running") and leave
/// `LastUpdateStatus` at `InProgress` for good. So here the rollout's calls are real and their
/// effect is checked in LocalStack, but their outcome is `InProgress`, never `Updated`: the
/// wait for `LastUpdateStatus` to finish cannot be shown against LocalStack. For the same
/// reason a changed template is a new template function here (an updated one would stay
/// `InProgress`, and the rollout waits for a template's update to finish).
#[tokio::test]
async fn a_rollout_brings_tenant_functions_to_the_template_and_a_second_changes_nothing() {
    let lambda = lambda();
    let mut p = provisioner().await;
    let mut config = (*p.ctx.config).clone();
    own_prefix(&mut config);
    p.ctx.config = std::sync::Arc::new(config.clone());
    let mut tenants = Vec::new();
    for _ in 0..2 {
        let t = shared::services::tenants::create(
            &p.ctx,
            &TenantName::parse(&unique("roll")).unwrap(),
            None,
        )
        .await
        .unwrap();
        // Dedicated: only a tenant with a capacity has a function of its own to roll out to.
        shared::services::tenants::set_capacity(&p.ctx, t.id, Some(1))
            .await
            .unwrap();
        p.run(&Job::OnboardTenant { tenant_id: t.id })
            .await
            .expect("onboard");
        tenants.push(t.id);
    }

    // The deploy: new code, a new environment variable and more memory.
    let v2 = unique("template-v2");
    lambda
        .create_function()
        .function_name(&v2)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role("arn:aws:iam::000000000000:role/msgsvc-consumer")
        .memory_size(512)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("MSGSVC_RELEASE", "2")
                .build(),
        )
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(zip_with(b"release 2")))
                .build(),
        )
        .send()
        .await
        .expect("create the new template function");
    config.control.function_template = v2.clone();
    let mut ctx = p.ctx.clone();
    ctx.config = std::sync::Arc::new(config);
    let mut p = Provisioner::new(ctx, lambda.clone());
    p.rollout_options.settle = std::time::Duration::from_secs(1);
    let template = function_conf(&lambda, &v2).await;
    for &id in &tenants {
        let before = function_conf(&lambda, &p.function_name(id)).await;
        assert_ne!(before.code_sha256, template.code_sha256);
    }

    let report = p.rollout().await.expect("rollout");
    assert!(report.ran);
    let ours: Vec<_> = tenants.iter().map(|&id| p.function_name(id)).collect();
    assert_eq!(report.functions.len(), 2, "{:?}", report.functions);
    for (name, outcome) in &report.functions {
        assert!(ours.contains(name));
        assert!(
            matches!(outcome, Outcome::Updated(_) | Outcome::InProgress(_)),
            "{name}: {outcome:?}"
        );
    }
    for name in &ours {
        let now = function_conf(&lambda, name).await;
        assert_eq!(now.code_sha256, template.code_sha256, "{name}: code");
        assert_eq!(now.memory_size, Some(512), "{name}: memory");
        assert_eq!(
            now.environment.and_then(|e| e.variables),
            template.environment.clone().and_then(|e| e.variables),
            "{name}: environment"
        );
    }

    let again = p.rollout().await.expect("second rollout");
    for (name, outcome) in &again.functions {
        assert_eq!(*outcome, Outcome::Unchanged, "{name}");
    }

    // Both status views show each function's version against the template's.
    for &id in &tenants {
        let capacity = shared::services::tenants::capacity(&p.ctx, id)
            .await
            .unwrap();
        assert_eq!(capacity.code_sha256, template.code_sha256);
        assert_eq!(capacity.template_code_sha256, template.code_sha256);
        assert_eq!(capacity.up_to_date, Some(true));
        let status = shared::services::consumers::status(&p.ctx, Some(id))
            .await
            .unwrap();
        assert_eq!(status[0].capacity.as_ref().unwrap().up_to_date, Some(true));
    }
    let all = shared::services::consumers::status(&p.ctx, None)
        .await
        .unwrap();
    let mine = all.iter().find(|q| q.tenant_id == tenants[0]).unwrap();
    assert_eq!(
        mine.capacity.as_ref().unwrap().template_code_sha256,
        template.code_sha256
    );
}

/// A mapping whose CreateEventSourceMapping fails shows `failed` with the service's answer in
/// both status views, and the reconcile applies it again. LocalStack cannot emulate Amazon MQ
/// event source mappings: what it answers for an Amazon MQ broker ARN is its own failure (an
/// `InternalError` "Unsupported event source mapping source service mq"), so this shows the
/// failure path and the retry, not Amazon MQ's behaviour. "Fixing the cause" here is the
/// deployment without a broker (the local one), whose mapping outcome is `unsupported`.
#[tokio::test]
async fn a_failed_mapping_shows_as_failed_and_the_reconcile_applies_it_again() {
    let lambda = lambda();
    let base = provisioner().await;
    let mut config = (*base.ctx.config).clone();
    own_prefix(&mut config);
    config.control.mq_broker_arn = Some(format!(
        "arn:aws:mq:us-east-1:000000000000:broker:msgsvc:b-{}",
        uuid::Uuid::new_v4()
    ));
    config.control.mq_secret_arn =
        Some("arn:aws:secretsmanager:us-east-1:000000000000:secret:msgsvc-mq".into());
    let mut ctx = base.ctx.clone();
    ctx.config = std::sync::Arc::new(config.clone());
    ctx.brokers = std::sync::Arc::new(shared::broker::Brokers::new(&config, "provisioner-test"));
    let p = Provisioner::new(ctx, lambda.clone());
    let tenant = shared::services::tenants::create(
        &p.ctx,
        &TenantName::parse(&unique("map")).unwrap(),
        None,
    )
    .await
    .unwrap();
    let id = tenant.id;

    let err = p
        .run(&Job::OnboardTenant { tenant_id: id })
        .await
        .expect_err("the mapping cannot be created");
    let mapping = |status: &[shared::services::consumers::QueueStatus]| {
        status
            .iter()
            .find(|q| q.tenant_id == id)
            .and_then(|q| q.mapping.clone())
            .expect("mapping recorded")
    };
    let tenant_view = shared::services::consumers::status(&p.ctx, Some(id))
        .await
        .unwrap();
    let admin_view = shared::services::consumers::status(&p.ctx, None)
        .await
        .unwrap();
    for m in [mapping(&tenant_view), mapping(&admin_view)] {
        assert_eq!(m.state, "failed");
        let why = m.error.unwrap();
        assert!(why.contains("EventSourceMapping"), "{why}");
    }
    println!("LocalStack's answer: {err:#}");
    // Counted from here (creating the tenant applied it once through the local control plane).
    let tried = mapping(&tenant_view).attempts;

    let report = p.reconcile_pass().await.expect("reconcile");
    assert_eq!(report.reapplied, 1, "{report:?}");
    let m = mapping(
        &shared::services::consumers::status(&p.ctx, Some(id))
            .await
            .unwrap(),
    );
    assert_eq!(
        (m.state.as_str(), m.attempts),
        ("failed", tried + 1),
        "{m:?}"
    );

    // The cause removed: the same deployment without a broker.
    config.control.mq_broker_arn = None;
    let mut ctx = p.ctx.clone();
    ctx.brokers = std::sync::Arc::new(shared::broker::Brokers::new(&config, "provisioner-test"));
    ctx.config = std::sync::Arc::new(config);
    let fixed = Provisioner::new(ctx, lambda);
    let report = fixed.reconcile_pass().await.expect("reconcile");
    assert_eq!(report.reapplied, 1, "{report:?}");
    let m = mapping(
        &shared::services::consumers::status(&p.ctx, Some(id))
            .await
            .unwrap(),
    );
    assert_eq!(
        (m.state.as_str(), m.attempts),
        ("unsupported", tried + 2),
        "{m:?}"
    );
    assert!(
        fixed.reconcile_pass().await.unwrap().reapplied == 0,
        "nothing left to retry"
    );
}

/// A tenant on a broker of the registry is mapped with that broker's ARN, not the deployment's:
/// here the deployment has none (the local broker) and the registered broker has one, so the
/// registered broker's tenant gets a CreateEventSourceMapping (which LocalStack fails, see
/// above: `failed` with its answer) and the home broker's tenant gets none (`unsupported`).
#[tokio::test]
async fn a_tenant_on_a_registered_broker_is_mapped_with_that_brokers_arn() {
    let p = provisioner().await;
    let broker = format!("b{}", &unique("x")[2..12]);
    let arn = format!(
        "arn:aws:mq:us-east-1:000000000000:broker:{broker}:b-{}",
        uuid::Uuid::new_v4()
    );
    let req = shared::services::brokers::BrokerRequest {
        amqp_url: Some("amqp://127.0.0.1:5672/%2f".into()),
        mq_broker_arn: Some(arn.clone()),
        mq_secret_arn: Some("arn:aws:secretsmanager:us-east-1:000000000000:secret:other-mq".into()),
        // Placed on explicitly only: the shared test database's other tenants stay home.
        accepting: Some(false),
        ..Default::default()
    };
    shared::services::brokers::register(&p.ctx, &broker, &req)
        .await
        .unwrap();
    let name = |n: &str| TenantName::parse(&unique(n)).unwrap();
    let away = shared::services::tenants::create(&p.ctx, &name("away"), Some(&broker))
        .await
        .unwrap();
    let home = shared::services::tenants::create(&p.ctx, &name("home"), None)
        .await
        .unwrap();
    assert_eq!(
        home.broker_id, "default",
        "a broker not accepting gets no one unasked"
    );
    let endpoint = p.ctx.brokers.for_tenant(&p.ctx.db, away.id).await.unwrap();
    assert_eq!(endpoint.mq_broker_arn.as_deref(), Some(arn.as_str()));

    let err = p
        .run(&Job::OnboardTenant { tenant_id: away.id })
        .await
        .expect_err("LocalStack cannot create an Amazon MQ mapping");
    p.run(&Job::OnboardTenant { tenant_id: home.id })
        .await
        .expect("no broker ARN at home: nothing to create");
    let state = |t| {
        let ctx = p.ctx.clone();
        async move {
            let status = shared::services::consumers::status(&ctx, Some(t))
                .await
                .unwrap();
            status[0].mapping.clone().expect("mapping recorded")
        }
    };
    let (away_m, home_m) = (state(away.id).await, state(home.id).await);
    assert_eq!(away_m.state, "failed", "{err:#}");
    assert!(away_m.error.unwrap().contains("EventSourceMapping"));
    assert_eq!(home_m.state, "unsupported", "{home_m:?}");
}

/// A deactivated tenant stays without a function: jobs queued before its deactivation
/// (OnboardTenant, ApplyConsumer, ScaleTenant) that run after it and its DeleteTenant create
/// nothing. (A tenant whose function LocalStack created cannot be used here: LocalStack
/// without Docker answers DeleteFunction on its `Failed` functions with an `InternalError`,
/// checked with LocalStack 2026.3.0.)
#[tokio::test]
async fn old_jobs_after_a_deletion_create_nothing() {
    let p = provisioner().await;
    let tenant = shared::services::tenants::create(
        &p.ctx,
        &TenantName::parse(&unique("gone")).unwrap(),
        None,
    )
    .await
    .unwrap();
    let id = tenant.id;
    shared::services::tenants::deactivate(&p.ctx, id)
        .await
        .unwrap();
    p.run(&Job::DeleteTenant { tenant_id: id }).await.unwrap();
    for job in [
        Job::OnboardTenant { tenant_id: id },
        Job::ApplyConsumer {
            tenant_id: id,
            queue_name: "default".into(),
        },
        Job::ScaleTenant { tenant_id: id },
    ] {
        p.run(&job)
            .await
            .unwrap_or_else(|e| panic!("{job:?}: {e:#}"));
    }
    let got = p
        .lambda
        .get_function()
        .function_name(p.function_name(id))
        .send()
        .await;
    assert!(
        got.as_ref()
            .err()
            .and_then(|e| e.as_service_error())
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "the function must not exist: {got:?}"
    );
    let capacity = shared::services::tenants::capacity(&p.ctx, id)
        .await
        .unwrap();
    assert_eq!(capacity.state, "deleted");
    let status = shared::services::consumers::status(&p.ctx, Some(id))
        .await
        .unwrap();
    assert_eq!(status[0].mapping.as_ref().unwrap().state, "deleted");
}

/// The hold a create runs under: a deactivation waits for a create in flight, and a create
/// after the deactivation does not run.
#[tokio::test]
async fn a_deactivation_waits_for_a_create_in_flight_and_stops_later_ones() {
    let p = provisioner().await;
    let tenant = shared::services::tenants::create(
        &p.ctx,
        &TenantName::parse(&unique("race")).unwrap(),
        None,
    )
    .await
    .unwrap();
    let id = tenant.id;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let ctx = p.ctx.clone();
    let create = tokio::spawn(async move {
        provisioner::hold::while_active(&ctx, id, || async {
            started_tx.send(()).unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            Ok(std::time::Instant::now())
        })
        .await
    });
    started_rx.await.unwrap();
    shared::services::tenants::deactivate(&p.ctx, id)
        .await
        .unwrap();
    let deactivated = std::time::Instant::now();
    let created = create.await.unwrap().unwrap().expect("ran while active");
    assert!(
        created <= deactivated,
        "the deactivation waited for the create"
    );

    let ran = provisioner::hold::while_active(&p.ctx, id, || async { Ok(()) })
        .await
        .unwrap();
    assert!(ran.is_none(), "no create after the deactivation");
}
