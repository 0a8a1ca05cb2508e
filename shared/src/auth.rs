//! JWT bearer auth: HS256 with `JWT_SECRET` for local use; RS256/ES256 with PEM public keys or a
//! JWKS document (an identity provider such as Cognito). An `admin` token manages everything; a
//! tenant token is bound to one tenant id and reaches only that tenant's routes.

mod jwks;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::jwks::RemoteJwks;
use crate::{
    config::JwtConfig,
    domain::TenantId,
    error::{Error, Result},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Tenant,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Who is calling, after the token was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin {
        subject: String,
    },
    Tenant {
        subject: String,
        tenant_id: TenantId,
    },
}

impl Principal {
    pub fn require_admin(&self) -> Result<()> {
        match self {
            Principal::Admin { .. } => Ok(()),
            Principal::Tenant { .. } => {
                Err(Error::Forbidden("this route needs an admin token".into()))
            }
        }
    }

    /// Admin, or a tenant token bound to exactly this tenant.
    pub fn require_tenant(&self, tenant: TenantId) -> Result<()> {
        match self {
            Principal::Admin { .. } => Ok(()),
            Principal::Tenant { tenant_id, .. } if *tenant_id == tenant => Ok(()),
            Principal::Tenant { .. } => Err(Error::Forbidden(
                "this token does not grant access to that tenant".into(),
            )),
        }
    }

    pub fn subject(&self) -> &str {
        match self {
            Principal::Admin { subject } | Principal::Tenant { subject, .. } => subject,
        }
    }
}

/// A verification key and the algorithm it is for.
#[derive(Clone)]
struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies bearer tokens: HS256 with the shared secret (local use), RS256/ES256 with
/// configured PEM keys or a JWKS document. The token's `alg` must match its key's; `none` and
/// an HS256 token "signed" with a public key never verify.
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    encoding: EncodingKey,
    static_keys: Vec<PublicKey>,
    remote: Option<Arc<RemoteJwks>>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: u64,
    role_claim: String,
    tenant_claim: String,
}

impl Authenticator {
    /// HS256 only, with the default claim names (local tokens, tests, `api token`).
    pub fn hs256(secret: &str) -> Self {
        Self {
            hs256: Some(DecodingKey::from_secret(secret.as_bytes())),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            static_keys: Vec::new(),
            remote: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: 30,
            role_claim: "role".into(),
            tenant_claim: "tenant_id".into(),
        }
    }

    /// From the configuration; fails on an unreadable PEM or JWKS (start-up refuses to run).
    pub fn from_config(secret: &str, jwt: &JwtConfig) -> anyhow::Result<Self> {
        let mut static_keys = Vec::new();
        if let Some(pem) = &jwt.public_keys_pem {
            static_keys.extend(keys_from_pem(&inline_or_file(pem, "-----")?)?);
        }
        if let Some(jwks) = &jwt.jwks {
            static_keys.extend(keys_from_jwks(&inline_or_file(jwks, "{")?)?);
        }
        let remote = jwt
            .jwks_url
            .as_ref()
            .map(|url| RemoteJwks::new(url, jwt.jwks_cache_ttl, jwt.jwks_min_refresh));
        let mut auth = Self::hs256(secret);
        if !jwt.hs256_enabled {
            auth.hs256 = None;
        }
        auth.static_keys = static_keys;
        auth.remote = remote;
        auth.issuers = jwt.issuers.clone();
        auth.audiences = jwt.audiences.clone();
        auth.leeway = jwt.leeway.as_secs();
        auth.role_claim = jwt.role_claim.clone();
        auth.tenant_claim = jwt.tenant_claim.clone();
        Ok(auth)
    }

    /// Verifies an `Authorization` header value (`Bearer <jwt>`).
    pub async fn verify_header(&self, header: Option<&str>) -> Result<Principal> {
        let header = header.ok_or_else(|| Error::Unauthenticated("missing bearer token".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Error::Unauthenticated("expected 'Authorization: Bearer <token>'".into())
            })?;
        self.verify(token.trim()).await
    }

    pub async fn verify(&self, token: &str) -> Result<Principal> {
        let invalid = || Error::Unauthenticated("token is invalid".into());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        let candidates: Vec<DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.clone().into_iter().collect(),
            Algorithm::RS256 | Algorithm::ES256 => {
                self.public_keys(header.alg, header.kid.as_deref()).await
            }
            _ => Vec::new(),
        };
        if candidates.is_empty() {
            return Err(Error::Unauthenticated(
                "no key accepts this token's algorithm and key id".into(),
            ));
        }
        let validation = self.validation(header.alg);
        let mut last = None;
        for key in &candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation) {
                Ok(data) => return self.principal(data.claims),
                Err(e) => last = Some(e),
            }
        }
        use jsonwebtoken::errors::ErrorKind;
        Err(Error::Unauthenticated(
            match last.as_ref().map(|e| e.kind()) {
                Some(ErrorKind::ExpiredSignature) => "token expired",
                Some(ErrorKind::InvalidSignature) => "token signature is invalid",
                Some(ErrorKind::InvalidIssuer) => "token issuer is not accepted",
                Some(ErrorKind::InvalidAudience) => "token audience is not accepted",
                Some(ErrorKind::ImmatureSignature) => "token is not valid yet",
                _ => "token is invalid",
            }
            .into(),
        ))
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.set_required_spec_claims(&["exp", "sub"]);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        if self.issuers.is_empty() {
            v.iss = None;
        } else {
            v.set_issuer(&self.issuers);
        }
        if self.audiences.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audiences);
        }
        v
    }

    /// Keys for `alg`: by `kid` when the token names one (refreshing the JWKS for an unknown
    /// one), else every key of that algorithm.
    async fn public_keys(&self, alg: Algorithm, kid: Option<&str>) -> Vec<DecodingKey> {
        let mut keys: Vec<PublicKey> = self.static_keys.clone();
        if let Some(remote) = &self.remote {
            keys.extend(RemoteJwks::keys(remote, kid).await.iter().cloned());
        }
        keys.into_iter()
            .filter(|k| k.alg == alg)
            .filter(|k| match (kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                // A token with a kid matches only keys of that kid; PEM keys have none.
                (Some(_), None) => false,
                (None, _) => true,
            })
            .map(|k| k.key)
            .collect()
    }

    fn principal(&self, claims: serde_json::Map<String, Value>) -> Result<Principal> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let roles: Vec<&str> = match claims.get(&self.role_claim) {
            Some(Value::String(r)) => vec![r.as_str()],
            Some(Value::Array(rs)) => rs.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if roles.contains(&"admin") {
            return Ok(Principal::Admin { subject });
        }
        let tenant = claims.get(&self.tenant_claim).and_then(Value::as_str);
        match tenant {
            Some(t) if roles.is_empty() || roles.contains(&"tenant") => Ok(Principal::Tenant {
                subject,
                tenant_id: t.parse().map_err(|_| {
                    Error::Unauthenticated(format!(
                        "the {} claim is not a tenant id",
                        self.tenant_claim
                    ))
                })?,
            }),
            _ => Err(Error::Unauthenticated(format!(
                "a token needs {}=admin, or a {} claim",
                self.role_claim, self.tenant_claim
            ))),
        }
    }

    /// Signs claims with HS256 (local tokens, tests).
    pub fn mint(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Internal(e.into()))
    }
}

/// `raw` itself when it starts with `marker`, else the contents of the file it names.
fn inline_or_file(raw: &str, marker: &str) -> anyhow::Result<String> {
    let trimmed = raw.trim_start();
    if trimmed.starts_with(marker) {
        return Ok(trimmed.to_string());
    }
    std::fs::read_to_string(trimmed)
        .map_err(|e| anyhow::anyhow!("cannot read key file {trimmed:?}: {e}"))
}

/// Every `PUBLIC KEY` block: RSA keys verify RS256, EC P-256 keys ES256.
fn keys_from_pem(pem: &str) -> anyhow::Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    for block in pem.split_inclusive("-----END PUBLIC KEY-----") {
        let Some(start) = block.find("-----BEGIN") else {
            continue;
        };
        let block = &block.as_bytes()[start..];
        let key = if let Ok(k) = DecodingKey::from_rsa_pem(block) {
            PublicKey {
                kid: None,
                alg: Algorithm::RS256,
                key: k,
            }
        } else if let Ok(k) = DecodingKey::from_ec_pem(block) {
            PublicKey {
                kid: None,
                alg: Algorithm::ES256,
                key: k,
            }
        } else {
            anyhow::bail!(
                "JWT_PUBLIC_KEYS holds a block that is neither an RSA nor an EC public key"
            );
        };
        keys.push(key);
    }
    anyhow::ensure!(!keys.is_empty(), "JWT_PUBLIC_KEYS holds no PEM public key");
    Ok(keys)
}

/// The RS256 and ES256 signing keys of a JWKS document; others are skipped.
fn keys_from_jwks(json: &str) -> anyhow::Result<Vec<PublicKey>> {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(json)?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.push(PublicKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
    }
    Ok(keys)
}

impl Claims {
    pub fn admin(sub: &str, ttl_secs: u64) -> Self {
        Self::new(sub, Role::Admin, None, ttl_secs)
    }

    pub fn tenant(tenant_id: TenantId, ttl_secs: u64) -> Self {
        Self::new(
            &format!("tenant:{tenant_id}"),
            Role::Tenant,
            Some(tenant_id),
            ttl_secs,
        )
    }

    fn new(sub: &str, role: Role, tenant_id: Option<TenantId>, ttl_secs: u64) -> Self {
        let now = chrono::Utc::now().timestamp() as u64;
        Self {
            sub: sub.to_string(),
            role,
            tenant_id,
            exp: now + ttl_secs,
            iat: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_round_trip_and_scope() {
        let auth = Authenticator::hs256("s3cret");
        let t = TenantId::generate();
        let token = auth.mint(&Claims::tenant(t, 60)).unwrap();
        let p = auth
            .verify_header(Some(&format!("Bearer {token}")))
            .await
            .unwrap();
        assert!(p.require_tenant(t).is_ok());
        assert_eq!(
            p.require_tenant(TenantId::generate()).unwrap_err().code(),
            "forbidden"
        );
        assert_eq!(p.require_admin().unwrap_err().code(), "forbidden");

        let admin = auth
            .verify(&auth.mint(&Claims::admin("ops", 60)).unwrap())
            .await
            .unwrap();
        assert!(admin.require_admin().is_ok() && admin.require_tenant(t).is_ok());
    }

    #[tokio::test]
    async fn bad_tokens_are_unauthenticated() {
        let auth = Authenticator::hs256("s3cret");
        let other = Authenticator::hs256("other");
        let mut expired = Claims::admin("ops", 0);
        expired.exp -= 3600;
        for header in [
            None,
            Some("Basic abc".to_string()),
            Some("Bearer not.a.jwt".to_string()),
            Some(format!(
                "Bearer {}",
                other.mint(&Claims::admin("x", 60)).unwrap()
            )),
            Some(format!("Bearer {}", auth.mint(&expired).unwrap())),
        ] {
            let err = auth.verify_header(header.as_deref()).await.unwrap_err();
            assert_eq!(err.code(), "unauthorized", "{header:?}");
        }
    }

    mod properties {
        use futures::executor::block_on;
        use proptest::prelude::*;

        use super::super::*;

        fn claims() -> impl Strategy<Value = Claims> {
            (
                "\\PC{1,40}",
                any::<bool>(),
                any::<u128>(),
                60u64..10_000_000,
                proptest::option::of(0u64..2_000_000_000),
            )
                .prop_map(|(sub, admin, id, ttl, iat)| {
                    let mut c = if admin {
                        Claims::admin(&sub, ttl)
                    } else {
                        Claims::tenant(TenantId(uuid::Uuid::from_u128(id)), ttl)
                    };
                    c.sub = sub;
                    c.iat = iat;
                    c
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            #[test]
            fn any_claims_round_trip(c in claims()) {
                let auth = Authenticator::hs256("property-secret");
                let principal = block_on(auth.verify(&auth.mint(&c).unwrap())).unwrap();
                let expected = match c.tenant_id {
                    None => Principal::Admin { subject: c.sub.clone() },
                    Some(tenant_id) => Principal::Tenant { subject: c.sub.clone(), tenant_id },
                };
                prop_assert_eq!(principal, expected);
            }

            #[test]
            fn any_tampered_byte_is_refused(
                c in claims(),
                at in any::<prop::sample::Index>(),
                with in prop::sample::select(b"AQgw_-.=xyz019+/ ".to_vec()),
            ) {
                let auth = Authenticator::hs256("property-secret");
                let mut token = auth.mint(&c).unwrap().into_bytes();
                let i = at.index(token.len());
                prop_assume!(token[i] != with);
                token[i] = with;
                let token = String::from_utf8(token).unwrap();
                prop_assert_eq!(block_on(auth.verify(&token)).unwrap_err().code(), "unauthorized");
            }

            #[test]
            fn another_secret_is_refused(c in claims(), secret in "\\PC{1,20}") {
                prop_assume!(secret != "property-secret");
                let token = Authenticator::hs256(&secret).mint(&c).unwrap();
                let auth = Authenticator::hs256("property-secret");
                prop_assert_eq!(block_on(auth.verify(&token)).unwrap_err().code(), "unauthorized");
            }

            #[test]
            fn garbage_headers_are_refused(h in "\\PC{0,200}") {
                let auth = Authenticator::hs256("property-secret");
                prop_assert_eq!(block_on(auth.verify_header(Some(&h))).unwrap_err().code(), "unauthorized");
            }
        }
    }
}
