use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::auth::Claims;

use crate::helpers::{TestApp, spawn_app, spawn_with};

/// Every tenant-scoped route, for tenant `t` and one of its messages `m`.
fn tenant_routes(t: &str, m: &str) -> Vec<(Method, String, Option<Value>)> {
    let publish = json!({ "queue_name": "q", "message_body": 1 });
    vec![
        (Method::GET, format!("/api/v1/tenants/{t}"), None),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/messages"),
            Some(publish.clone()),
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/messages/batch"),
            Some(json!({ "messages": [publish] })),
        ),
        (Method::GET, format!("/api/v1/tenants/{t}/messages"), None),
        (
            Method::GET,
            format!("/api/v1/tenants/{t}/messages/{m}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/tenants/{t}/messages/{m}/attempts"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/messages/{m}/cancel"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/tenants/{t}/dead-letters"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/tenants/{t}/dead-letters/redrive"),
            Some(json!({})),
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{t}/consumers/q/config"),
            Some(json!({ "workers": 2 })),
        ),
        (Method::GET, format!("/api/v1/tenants/{t}/consumers"), None),
    ]
}

fn admin_routes(t: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some(json!({ "name": shared::testkit::unique("x") })),
        ),
        (Method::GET, "/api/v1/tenants".into(), None),
        (Method::DELETE, format!("/api/v1/tenants/{t}"), None),
        (Method::GET, "/api/v1/consumers/status".into(), None),
        (
            Method::PUT,
            format!("/api/v1/tenants/{t}/limits"),
            Some(json!({ "max_queues": 1000 })),
        ),
        (
            Method::PUT,
            format!("/api/v1/tenants/{t}/retention"),
            Some(json!({ "completed_days": 7 })),
        ),
    ]
}

/// The token with one byte of its signature changed.
fn flip_signature_byte(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.as_bytes().to_vec();
    sig[4] = if sig[4] == b'A' { b'B' } else { b'A' };
    format!("{head}.{}", String::from_utf8(sig).unwrap())
}

/// The token's claims under `{"alg":"none"}` and no signature.
fn alg_none(token: &str) -> String {
    use base64::Engine;
    let header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = token.split('.').nth(1).unwrap();
    format!("{header}.{payload}.")
}

/// Every route refuses each token with 401 `unauthorized` and names no tenant data.
async fn assert_all_unauthorized(
    app: &TestApp,
    routes: &[(Method, String, Option<Value>)],
    tokens: &[(Option<&str>, &str)],
    secret: &str,
) {
    for (token, what) in tokens {
        for (method, path, body) in routes {
            let r = app.call(method.clone(), path, *token, body.clone()).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "{what}: {method} {path}"
            );
            assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
            assert!(
                !r.body.to_string().contains(secret),
                "{what}: {method} {path}"
            );
        }
    }
}

/// A tenant and a message of it, scheduled an hour ahead so that its own token can cancel it.
async fn tenant_with_message(app: &TestApp) -> (String, String) {
    let t = app.create_tenant().await;
    let publish = json!({"queue_name": "q", "message_body": {"secret": t}, "deliver_after": "1h"});
    let r = app
        .post(
            &format!("/api/v1/tenants/{t}/messages"),
            &app.admin,
            publish,
        )
        .await;
    assert_eq!(r.body["status"], "scheduled", "{}", r.body);
    let m = r.body["id"].as_str().unwrap().to_string();
    (t, m)
}

#[tokio::test]
async fn a_tenant_token_reaches_only_its_own_tenant() {
    let app = spawn_app().await;
    let (a, ma) = tenant_with_message(&app).await;
    let (b, mb) = tenant_with_message(&app).await;
    let token_b = app.tenant_token(&b);

    for (method, path, body) in tenant_routes(&a, &ma) {
        let r = app.call(method.clone(), &path, Some(&token_b), body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}"
        );
        assert!(
            !r.body.to_string().contains(&a),
            "no data of tenant A leaks"
        );
    }
    for (method, path, body) in admin_routes(&a) {
        let r = app.call(method.clone(), &path, Some(&token_b), body).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}"
        );
    }
    // Tenant A's message id under tenant B's own path is simply not found.
    let r = app
        .get(&format!("/api/v1/tenants/{b}/messages/{ma}"), &token_b)
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "message_not_found")
    );
    let r = app
        .get(
            &format!("/api/v1/tenants/{b}/messages/{ma}/attempts"),
            &token_b,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The same token works on its own tenant's routes.
    for (method, path, body) in tenant_routes(&b, &mb) {
        let r = app.call(method.clone(), &path, Some(&token_b), body).await;
        assert!(
            r.status.is_success(),
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
    }
    let list = app
        .get(&format!("/api/v1/tenants/{b}/messages?limit=500"), &token_b)
        .await;
    assert!(
        !list.body.to_string().contains(&a),
        "tenant B's list holds no tenant A data"
    );
}

#[tokio::test]
async fn missing_expired_and_tampered_tokens_are_unauthorized() {
    let app = spawn_app().await;
    let (a, ma) = tenant_with_message(&app).await;
    let mut expired = Claims::admin("ops", 0);
    expired.exp -= 3600;
    let expired = app.mint(&expired);
    let tampered = {
        let token = app.tenant_token(&a);
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        // Re-sign nothing: swap the payload for an admin one.
        let admin_payload = app.admin.split('.').nth(1).unwrap().to_string();
        parts[1] = admin_payload;
        parts.join(".")
    };
    let flipped = flip_signature_byte(&app.tenant_token(&a));
    let unsigned = alg_none(&app.admin);
    let tokens = [
        (None, "no token"),
        (Some(expired.as_str()), "expired"),
        (Some(tampered.as_str()), "payload swapped"),
        (Some(flipped.as_str()), "signature byte flipped"),
        (Some(unsigned.as_str()), "alg none"),
        (Some("garbage"), "garbage"),
    ];
    let mut routes = tenant_routes(&a, &ma);
    routes.extend(admin_routes(&a));
    assert_all_unauthorized(&app, &routes, &tokens, &ma).await;
    // Nothing was written by any refused call.
    let list = app
        .get(&format!("/api/v1/tenants/{a}/messages"), &app.admin)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn health_and_metrics_need_no_token() {
    let app = spawn_app().await;
    let health = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.body,
        json!({"status": "ok", "checks": {"database": "ok", "broker": "ok"}})
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("msgsvc_http_requests_total"), "{text}");
}

/// With `METRICS_REQUIRE_AUTH`, `/metrics` is an admin route like any other: 401 without a
/// token, 403 for a tenant's.
#[tokio::test]
async fn metrics_can_require_an_admin_token() {
    let app = spawn_with(|c| c.metrics_require_auth = true).await;
    let tenant = app.create_tenant().await;
    let anonymous = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(anonymous.headers.contains_key("www-authenticate"));
    let token = app.tenant_token(&tenant);
    let forbidden = app.call(Method::GET, "/metrics", Some(&token), None).await;
    assert_eq!(
        forbidden.status,
        StatusCode::FORBIDDEN,
        "{}",
        forbidden.body
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("msgsvc_http_requests_total"), "{text}");
}

#[tokio::test]
async fn openapi_document_is_served_without_a_token() {
    let app = spawn_app().await;
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body, api::openapi::document_json(&app.ctx.config));
    assert!(doc.body["paths"]["/api/v1/tenants/{tenant_id}/messages"]["post"].is_object());
}

/// The served document states the bounds of the configuration the API runs with, and the API
/// enforces exactly those.
#[tokio::test]
async fn served_document_states_the_deployment_bounds() {
    let app = spawn_with(|c| {
        c.limits.max_page_size = 7;
        c.limits.max_batch_items = 3;
        c.consumer.max_workers = 4;
    })
    .await;
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PageLimit"]["maximum"], 7,
        "{}",
        schemas["PageLimit"]
    );
    assert_eq!(schemas["MessageBatch"]["maxItems"], 3);
    assert_eq!(
        schemas["WorkerCount"]["maximum"], 4,
        "{}",
        schemas["WorkerCount"]
    );
    let admin = Some(app.admin.as_str());
    let ok = app
        .call(Method::GET, "/api/v1/tenants?limit=7", admin, None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let over = app
        .call(Method::GET, "/api/v1/tenants?limit=8", admin, None)
        .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert_eq!(over.body["error"]["code"], "invalid_limit");
}

/// With RS256 configured: another tenant's token is 403 everywhere, and expired, tampered,
/// alg-none and HS256 tokens "signed" with the public key are 401 everywhere.
#[tokio::test]
async fn rs256_isolation_matrix() {
    use crate::jwt::{RSA1, RSA1_PUB, sign, spawn_rs256, tenant_claims};
    use jsonwebtoken::{Algorithm, EncodingKey};
    let app = spawn_rs256(None, Some(RSA1_PUB)).await;
    let key = EncodingKey::from_rsa_pem(RSA1.as_bytes()).unwrap();
    let admin = sign(
        Algorithm::RS256,
        &key,
        None,
        tenant_claims(
            "",
            serde_json::json!({ "role": "admin", "tenant_id": null }),
        ),
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = app
            .post(
                "/api/v1/tenants",
                &admin,
                json!({ "name": shared::testkit::unique("rs") }),
            )
            .await;
        let t = r.body["id"].as_str().unwrap().to_string();
        let m = app
            .post(
                &format!("/api/v1/tenants/{t}/messages"),
                &admin,
                json!({ "queue_name": "q", "message_body": { "secret": t } }),
            )
            .await
            .body["id"]
            .as_str()
            .unwrap()
            .to_string();
        ids.push((t, m));
    }
    let ((a, ma), (b, _)) = (ids[0].clone(), ids[1].clone());
    let token_b = sign(Algorithm::RS256, &key, None, tenant_claims(&b, json!({})));
    let mut routes = tenant_routes(&a, &ma);
    for (method, path, body) in &routes {
        let r = app
            .call(method.clone(), path, Some(&token_b), body.clone())
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{method} {path}"
        );
        assert!(
            !r.body.to_string().contains(&a),
            "no data of tenant A leaks"
        );
    }
    routes.extend(admin_routes(&a));
    let own_a = sign(Algorithm::RS256, &key, None, tenant_claims(&a, json!({})));
    let expired = sign(
        Algorithm::RS256,
        &key,
        None,
        tenant_claims(&a, json!({ "exp": chrono::Utc::now().timestamp() - 3600 })),
    );
    // The classic confusion attack: HS256 with the public key as the shared secret.
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &tenant_claims(&a, json!({ "role": "admin" })),
        &EncodingKey::from_secret(RSA1_PUB.as_bytes()),
    )
    .unwrap();
    let flipped = flip_signature_byte(&own_a);
    let unsigned = alg_none(&admin);
    let tokens = [
        (None, "no token"),
        (Some(expired.as_str()), "expired"),
        (Some(flipped.as_str()), "signature byte flipped"),
        (Some(unsigned.as_str()), "alg none"),
        (Some(confused.as_str()), "HS256 signed with the public key"),
    ];
    assert_all_unauthorized(&app, &routes, &tokens, &ma).await;
    // Tenant A's own token still works, and A's data is intact.
    let r = app
        .get(&format!("/api/v1/tenants/{a}/messages/{ma}"), &own_a)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Who may call each route is declared once, by its handler's scope extractor; the document is
/// generated from the same declaration. Walk the served document and check every secured
/// operation against the running API: 401 without a token, 403 for another tenant's token, 403
/// for the tenant's own token where the document says admin only, and neither for a token the
/// document allows.
#[tokio::test]
async fn every_route_enforces_the_access_its_document_states() {
    let app = spawn_app().await;
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    let (tenant, message) = tenant_with_message(&app).await;
    let other = app.create_tenant().await;
    let own = app.tenant_token(&tenant);
    let foreign = app.tenant_token(&other);
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        let path = template
            .replace("{tenant_id}", &tenant)
            .replace("{message_id}", &message)
            .replace("{queue_name}", "orders");
        for (method, op) in item.as_object().unwrap() {
            if !op["security"].is_array() {
                continue;
            }
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = matches!(method, Method::POST | Method::PUT).then(|| json!({}));
            let admin_only = op["description"]
                .as_str()
                .unwrap()
                .ends_with("**Auth:** admin token.");
            let call = |token: Option<String>| {
                let (method, body) = (method.clone(), body.clone());
                let app = &app;
                let path = path.clone();
                async move { app.call(method, &path, token.as_deref(), body).await }
            };
            let r = call(None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {template}");
            let r = call(Some(foreign.clone())).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {template}");
            let r = call(Some(own.clone())).await;
            if admin_only {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {template}");
            } else {
                assert!(
                    r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                    "{method} {template}: {} {}",
                    r.status,
                    r.body
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 17,
        "only {checked} secured operations in the document"
    );
}
