//! Tokens from an identity provider: RS256 keys from a JWKS URL (with rotation), ES256 from a
//! PEM key, issuer/audience/expiry checks, Cognito-style claim names.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_with};

pub const RSA1: &str = include_str!("keys/rsa1.pem");
const RSA2: &str = include_str!("keys/rsa2.pem");
const EC1: &str = include_str!("keys/ec1.pem");
pub const RSA1_PUB: &str = include_str!("keys/rsa1.pub.pem");
const EC1_PUB: &str = include_str!("keys/ec1.pub.pem");
pub const ISSUER: &str = "https://idp.example.test";
pub const AUDIENCE: &str = "msgsvc";

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// The public JWK of a private key, under `kid`.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

pub fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a tenant token from the provider, with `extra` merged in.
pub fn tenant_claims(tenant: &str, extra: Value) -> Value {
    let mut c = json!({
        "sub": "user-1", "role": "tenant", "tenant_id": tenant,
        "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now(),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A JWKS endpoint whose document the test can replace.
struct JwksServer {
    url: String,
    doc: Arc<Mutex<Value>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> Self {
        let doc = Arc::new(Mutex::new(json!({ "keys": keys })));
        let served = doc.clone();
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let doc = served.lock().unwrap().clone();
                async move { axum::Json(doc) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, doc, task }
    }

    fn set(&self, keys: Vec<Value>) {
        *self.doc.lock().unwrap() = json!({ "keys": keys });
    }
}

/// The API verifying RS256 tokens from `jwks_url`, HS256 off, issuer and audience checked.
pub async fn spawn_rs256(jwks_url: Option<String>, pem: Option<&str>) -> TestApp {
    let pem = pem.map(String::from);
    spawn_with(move |c| {
        c.jwt.hs256_enabled = false;
        c.jwt.jwks_url = jwks_url;
        c.jwt.public_keys_pem = pem;
        c.jwt.jwks_min_refresh = Duration::ZERO;
        c.jwt.issuers = vec![ISSUER.into()];
        c.jwt.audiences = vec![AUDIENCE.into()];
        c.jwt.leeway = Duration::from_secs(5);
    })
    .await
}

async fn status_with(app: &TestApp, tenant: &str, token: &str) -> StatusCode {
    app.get(&format!("/api/v1/tenants/{tenant}"), token)
        .await
        .status
}

/// Creates a tenant through the database layer (the admin HS256 token is refused here).
async fn tenant(app: &TestApp) -> String {
    let name = shared::domain::TenantName::parse(&shared::testkit::unique("jwt")).unwrap();
    shared::services::tenants::create(&app.ctx, &name, None)
        .await
        .unwrap()
        .id
        .to_string()
}

#[tokio::test]
async fn rs256_tokens_from_a_jwks_verify_and_a_rotated_out_key_is_refused() {
    let (k1, k2) = (rsa(RSA1), rsa(RSA2));
    let jwks = JwksServer::start(vec![jwk(&k1, Algorithm::RS256, "k1")]).await;
    let app = spawn_rs256(Some(jwks.url.clone()), None).await;
    let t = tenant(&app).await;
    let old = sign(
        Algorithm::RS256,
        &k1,
        Some("k1"),
        tenant_claims(&t, json!({})),
    );
    assert_eq!(status_with(&app, &t, &old).await, StatusCode::OK);

    // The provider rotates: k2 is published, k1 withdrawn. The first token naming k2 makes the
    // API fetch the document again; from then on k1 is refused.
    jwks.set(vec![jwk(&k2, Algorithm::RS256, "k2")]);
    let new = sign(
        Algorithm::RS256,
        &k2,
        Some("k2"),
        tenant_claims(&t, json!({})),
    );
    assert_eq!(status_with(&app, &t, &new).await, StatusCode::OK);
    let r = app.get(&format!("/api/v1/tenants/{t}"), &old).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );

    // An admin token from the provider reaches admin routes.
    let admin = sign(
        Algorithm::RS256,
        &k2,
        Some("k2"),
        tenant_claims(&t, json!({ "role": "admin", "tenant_id": null })),
    );
    let r = app.get("/api/v1/tenants", &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn wrong_issuer_audience_expired_and_hs256_tokens_are_refused() {
    let k1 = rsa(RSA1);
    let jwks = JwksServer::start(vec![jwk(&k1, Algorithm::RS256, "k1")]).await;
    let app = spawn_rs256(Some(jwks.url.clone()), None).await;
    let t = tenant(&app).await;
    let good = sign(
        Algorithm::RS256,
        &k1,
        Some("k1"),
        tenant_claims(&t, json!({})),
    );
    assert_eq!(status_with(&app, &t, &good).await, StatusCode::OK);

    let refused = [
        ("wrong iss", json!({ "iss": "https://evil.example" })),
        ("wrong aud", json!({ "aud": "someone-else" })),
        ("expired", json!({ "exp": now() - 3600 })),
        ("no exp", json!({ "exp": null })),
    ];
    for (what, extra) in refused {
        let token = sign(Algorithm::RS256, &k1, Some("k1"), tenant_claims(&t, extra));
        let r = app.get(&format!("/api/v1/tenants/{t}"), &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
    }
    // Within the leeway an expired token still passes (clock skew).
    let skewed = sign(
        Algorithm::RS256,
        &k1,
        Some("k1"),
        tenant_claims(&t, json!({ "exp": now() - 2 })),
    );
    assert_eq!(status_with(&app, &t, &skewed).await, StatusCode::OK);
    // HS256 is off once public keys are configured: the dev secret's tokens are refused.
    let hs = app.tenant_token(&t);
    assert_eq!(status_with(&app, &t, &hs).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn es256_with_a_pem_key_and_cognito_style_claims() {
    let app = spawn_with(|c| {
        c.jwt.hs256_enabled = false;
        c.jwt.public_keys_pem = Some(format!("{RSA1_PUB}\n{EC1_PUB}"));
        c.jwt.role_claim = "cognito:groups".into();
        c.jwt.tenant_claim = "custom:tenant_id".into();
    })
    .await;
    let t = tenant(&app).await;
    let ec = EncodingKey::from_ec_pem(EC1.as_bytes()).unwrap();
    let claims = json!({ "sub": "u", "custom:tenant_id": t, "exp": now() + 600 });
    let token = sign(Algorithm::ES256, &ec, None, claims.clone());
    assert_eq!(status_with(&app, &t, &token).await, StatusCode::OK);
    // Cognito groups as the role: an "admin" group makes an admin.
    let admin = sign(
        Algorithm::ES256,
        &ec,
        None,
        json!({ "sub": "ops", "cognito:groups": ["staff", "admin"], "exp": now() + 600 }),
    );
    assert_eq!(
        app.get("/api/v1/tenants", &admin).await.status,
        StatusCode::OK
    );
    // The RSA PEM key verifies RS256 tokens too; a key it does not list does not.
    let rs = sign(Algorithm::RS256, &rsa(RSA1), None, claims.clone());
    assert_eq!(status_with(&app, &t, &rs).await, StatusCode::OK);
    let other = sign(Algorithm::RS256, &rsa(RSA2), None, claims);
    let r = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{t}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
