//! RS256/ES256 verification with a JWKS document served over HTTP and with PEM files: key
//! rotation by `kid`, `iss`/`aud` checks, and the algorithm-confusion tricks a hostile caller
//! would try. Keys are generated per test.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use serde_json::json;
use shared::{
    Config,
    auth::{Authenticator, Principal},
    domain::TenantId,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public_pem: String,
}

impl SigningKey {
    fn rsa(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::RS256,
            KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap(),
        )
    }

    fn ec(kid: &str) -> Self {
        Self::new(
            kid,
            Algorithm::ES256,
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        )
    }

    fn new(kid: &str, alg: Algorithm, pair: KeyPair) -> Self {
        let private = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        };
        Self {
            kid: kid.into(),
            alg,
            encoding,
            public_pem: pair.public_key_pem(),
        }
    }

    fn jwk(&self) -> serde_json::Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).unwrap()
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({"sub": "user-1", "exp": now + 600, "iat": now});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

/// Serves whatever JWKS document `doc` holds at the moment of each request.
async fn jwks_server(doc: Arc<Mutex<serde_json::Value>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = doc.lock().unwrap().to_string();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

fn config(vars: &[(&str, String)]) -> Config {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Config::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap()
}

fn authenticator(config: &Config) -> Authenticator {
    Authenticator::with_jwks_refetch(config, reqwest::Client::new(), Duration::ZERO).unwrap()
}

#[tokio::test]
async fn jwks_tokens_verify_and_a_rotated_out_key_is_refused() {
    let (old, new) = (SigningKey::rsa("2026-01"), SigningKey::rsa("2026-02"));
    let doc = Arc::new(Mutex::new(json!({"keys": [old.jwk()]})));
    let url = jwks_server(doc.clone()).await;
    let auth = authenticator(&config(&[("JWT_JWKS", url)]));
    let tenant = TenantId::generate();

    let by_old = old.sign(&claims(
        json!({"role": "tenant", "tenant_id": tenant.to_string()}),
    ));
    assert_eq!(
        auth.verify(&by_old).await.unwrap(),
        Principal::Tenant {
            subject: "user-1".into(),
            tenant_id: tenant
        }
    );

    // The provider rotates: the new key is published, the old one withdrawn. A token signed
    // with the new key makes the service refetch, after which the old key is gone.
    *doc.lock().unwrap() = json!({"keys": [new.jwk()]});
    let by_new = new.sign(&claims(json!({"role": "admin"})));
    assert!(matches!(
        auth.verify(&by_new).await.unwrap(),
        Principal::Admin { .. }
    ));
    let err = auth.verify(&by_old).await.unwrap_err();
    assert_eq!(err.code(), "unauthorized");
    assert!(err.to_string().contains("unknown"), "{err}");
}

#[tokio::test]
async fn es256_and_rs256_pem_keys_verify_with_issuer_and_audience_checks() {
    let dir = std::env::temp_dir().join(format!("msgsvc-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ec, rsa) = (SigningKey::ec("ec-1"), SigningKey::rsa("rsa-1"));
    std::fs::write(dir.join("ec.pem"), &ec.public_pem).unwrap();
    std::fs::write(dir.join("rsa.pem"), &rsa.public_pem).unwrap();
    let auth = authenticator(&config(&[
        (
            "JWT_PUBLIC_KEYS",
            format!(
                "ec-1={},rsa-1={}",
                dir.join("ec.pem").display(),
                dir.join("rsa.pem").display()
            ),
        ),
        ("JWT_ISSUER", "https://idp.example".into()),
        ("JWT_AUDIENCE", "msgsvc".into()),
    ]));
    let good = json!({"role": "admin", "iss": "https://idp.example", "aud": "msgsvc"});
    for key in [&ec, &rsa] {
        assert!(auth.verify(&key.sign(&claims(good.clone()))).await.is_ok());
    }
    for (bad, why) in [
        (
            json!({"role": "admin", "iss": "https://evil.example", "aud": "msgsvc"}),
            "issuer",
        ),
        (
            json!({"role": "admin", "iss": "https://idp.example", "aud": "other"}),
            "audience",
        ),
        (json!({"role": "admin", "aud": "msgsvc"}), "iss"),
    ] {
        let err = auth.verify(&ec.sign(&claims(bad))).await.unwrap_err();
        assert_eq!(err.code(), "unauthorized");
        assert!(err.to_string().contains(why), "{why}: {err}");
    }
    // Beyond the leeway (30 s by default) a token is expired.
    let mut expired = claims(good.clone());
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 120);
    let err = auth.verify(&rsa.sign(&expired)).await.unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    // Within it, it is still accepted (clock skew between the IdP and us).
    let mut skewed = claims(good);
    skewed["exp"] = json!(chrono::Utc::now().timestamp() - 5);
    assert!(auth.verify(&rsa.sign(&skewed)).await.is_ok());
}

#[tokio::test]
async fn algorithm_confusion_and_unsigned_tokens_are_refused() {
    let rsa = SigningKey::rsa("rsa-1");
    let doc = Arc::new(Mutex::new(json!({"keys": [rsa.jwk()]})));
    let url = jwks_server(doc).await;
    // JWKS configured and no explicit JWT_SECRET: HS256 is off, even the development secret.
    let auth = authenticator(&config(&[("JWT_JWKS", url)]));
    let admin = claims(json!({"role": "admin"}));

    let dev_hs256 = Authenticator::hs256(shared::config::DEV_JWT_SECRET)
        .mint(&serde_json::from_value(admin.clone()).unwrap())
        .unwrap();
    // HS256 "signed" with the RSA public key's PEM as the secret: the classic confusion attack.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &admin,
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    )
    .unwrap();
    // alg "none": header and claims with an empty signature.
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(admin.to_string())
    );
    // A valid RS256 token with one signature byte flipped.
    let mut tampered = rsa.sign(&admin).into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    for (token, name) in [
        (dev_hs256, "development HS256"),
        (confused, "HS256 with the public key"),
        (none, "alg none"),
        (tampered, "tampered signature"),
    ] {
        let err = auth.verify(&token).await.unwrap_err();
        assert_eq!(err.code(), "unauthorized", "{name}: {err}");
    }
    assert!(auth.verify(&rsa.sign(&admin)).await.is_ok());
}

#[tokio::test]
async fn cognito_style_claims_map_through_configured_claim_names() {
    let rsa = SigningKey::rsa("k");
    let dir = std::env::temp_dir().join(format!("msgsvc-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("k.pem"), &rsa.public_pem).unwrap();
    let auth = authenticator(&config(&[
        (
            "JWT_PUBLIC_KEYS",
            format!("k={}", dir.join("k.pem").display()),
        ),
        ("JWT_ROLE_CLAIM", "cognito:groups".into()),
        ("JWT_TENANT_CLAIM", "custom:tenant_id".into()),
    ]));
    let tenant = TenantId::generate();
    let as_tenant = rsa.sign(&claims(json!({"custom:tenant_id": tenant.to_string()})));
    assert_eq!(
        auth.verify(&as_tenant).await.unwrap(),
        Principal::Tenant {
            subject: "user-1".into(),
            tenant_id: tenant
        }
    );
    let as_admin = rsa.sign(&claims(json!({"cognito:groups": ["ops", "admin"]})));
    assert!(matches!(
        auth.verify(&as_admin).await.unwrap(),
        Principal::Admin { .. }
    ));
    let neither = rsa.sign(&claims(json!({"cognito:groups": ["ops"]})));
    assert_eq!(
        auth.verify(&neither).await.unwrap_err().code(),
        "unauthorized"
    );
}
