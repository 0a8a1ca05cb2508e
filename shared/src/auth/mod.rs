//! JWT bearer auth. An `admin` token manages everything; a `tenant` token is bound to one
//! tenant id and reaches only that tenant's routes. Tokens are HS256 with `JWT_SECRET` locally,
//! or RS256/ES256 from an identity provider (PEM keys or JWKS, see `keys`).

pub mod keys;

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{
    Config,
    domain::TenantId,
    error::{Error, Result},
};
use keys::{Jwks, VerifyKey};

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

/// Verifies bearer tokens: HS256 with the shared secret (local use), RS256/ES256 with PEM public
/// keys or a JWKS document (identity providers such as Cognito), with `iss`/`aud` checks and a
/// clock-skew leeway.
pub struct Authenticator {
    hs256: Option<(DecodingKey, EncodingKey)>,
    static_keys: Vec<VerifyKey>,
    jwks: Option<Jwks>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: u64,
    role_claim: String,
    tenant_claim: String,
}

impl Authenticator {
    /// HS256 only, with the default claim names (local use, tests, `api token`).
    pub fn hs256(secret: &str) -> Self {
        Self {
            hs256: Some((
                DecodingKey::from_secret(secret.as_bytes()),
                EncodingKey::from_secret(secret.as_bytes()),
            )),
            static_keys: Vec::new(),
            jwks: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: 30,
            role_claim: "role".into(),
            tenant_claim: "tenant_id".into(),
        }
    }

    /// What the configuration asks for. Fails on unreadable key files, so a bad deployment
    /// stops at start-up instead of refusing every request.
    pub fn from_config(config: &Config, http: reqwest::Client) -> anyhow::Result<Self> {
        Self::with_jwks_refetch(config, http, Duration::from_secs(30))
    }

    /// As `from_config`, with the shortest interval between JWKS fetches (tests shorten it).
    pub fn with_jwks_refetch(
        config: &Config,
        http: reqwest::Client,
        min_refetch: Duration,
    ) -> anyhow::Result<Self> {
        let auth = &config.auth;
        let mut this = Self::hs256(&config.jwt_secret);
        if !auth.hs256 {
            this.hs256 = None;
        }
        this.static_keys = auth
            .public_keys
            .iter()
            .map(|(kid, path)| keys::from_pem_file(kid.clone(), path))
            .collect::<anyhow::Result<_>>()?;
        this.jwks = auth
            .jwks
            .clone()
            .map(|source| Jwks::new(source, http, min_refetch));
        this.issuers = auth.issuers.clone();
        this.audiences = auth.audiences.clone();
        this.leeway = auth.leeway.as_secs();
        this.role_claim = auth.role_claim.clone();
        this.tenant_claim = auth.tenant_claim.clone();
        Ok(this)
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
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Error::Unauthenticated("token is invalid".into()))?;
        let claims = match header.alg {
            Algorithm::HS256 => {
                let (key, _) = self.hs256.as_ref().ok_or_else(|| {
                    Error::Unauthenticated("HS256 tokens are not accepted here".into())
                })?;
                self.decode(token, key, Algorithm::HS256)?
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let kid = header.kid.as_deref();
                let jwks_keys = match &self.jwks {
                    Some(jwks) => jwks.keys(kid).await.map_err(|e| {
                        tracing::error!(error = format!("{e:#}"), "no JWKS keys to verify with");
                        Error::Unavailable(crate::error::Dependency::IdentityProvider)
                    })?,
                    None => Default::default(),
                };
                // The key must be of the token's algorithm: an RSA key never verifies an
                // HS256 or ES256 token, whatever the header says.
                let candidates: Vec<&VerifyKey> = self
                    .static_keys
                    .iter()
                    .chain(jwks_keys.iter())
                    .filter(|k| k.alg == header.alg)
                    .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                    .collect();
                if candidates.is_empty() {
                    return Err(Error::Unauthenticated(
                        "the token's signing key is unknown".into(),
                    ));
                }
                let mut last = None;
                let mut found = None;
                for k in candidates {
                    match self.decode(token, &k.key, k.alg) {
                        Ok(c) => {
                            found = Some(c);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                match found {
                    Some(c) => c,
                    None => return Err(last.expect("at least one candidate")),
                }
            }
            _ => {
                return Err(Error::Unauthenticated(
                    "the token's algorithm is not accepted".into(),
                ));
            }
        };
        self.principal(claims)
    }

    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<ClaimMap> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(alg);
        let mut required = vec!["exp", "sub"];
        // A configured check also demands the claim: a token without `iss` must not pass an
        // issuer check by omission.
        if !self.issuers.is_empty() {
            required.push("iss");
        }
        if !self.audiences.is_empty() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        if self.issuers.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&self.issuers);
        }
        if self.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audiences);
        }
        jsonwebtoken::decode::<ClaimMap>(token, key, &validation)
            .map(|d| d.claims)
            .map_err(|e| {
                Error::Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".into(),
                    ErrorKind::ImmatureSignature => "token not valid yet".into(),
                    ErrorKind::InvalidSignature => "token signature is invalid".into(),
                    ErrorKind::InvalidIssuer => "token issuer is not accepted".into(),
                    ErrorKind::InvalidAudience => "token audience is not accepted".into(),
                    ErrorKind::MissingRequiredClaim(c) => format!("token lacks the {c} claim"),
                    _ => "token is invalid".into(),
                })
            })
    }

    /// Maps verified claims to a principal: the role claim (a string or a list) says admin or
    /// tenant; a tenant token must name its tenant.
    fn principal(&self, claims: ClaimMap) -> Result<Principal> {
        let subject = claims
            .get("sub")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let has_role = |role: &str| match claims.get(&self.role_claim) {
            Some(serde_json::Value::String(s)) => s == role,
            Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(role)),
            _ => false,
        };
        if has_role("admin") {
            return Ok(Principal::Admin { subject });
        }
        let tenant = claims.get(&self.tenant_claim).and_then(|v| v.as_str());
        match tenant {
            Some(t) => {
                let tenant_id = t.parse::<TenantId>().map_err(|_| {
                    Error::Unauthenticated(format!(
                        "the {} claim is not a tenant id",
                        self.tenant_claim
                    ))
                })?;
                Ok(Principal::Tenant { subject, tenant_id })
            }
            None => Err(Error::Unauthenticated(format!(
                "a tenant token needs a {} claim",
                self.tenant_claim
            ))),
        }
    }

    /// Signs claims with the HS256 secret (local tokens, tests).
    pub fn mint(&self, claims: &Claims) -> Result<String> {
        let (_, key) = self
            .hs256
            .as_ref()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("HS256 is disabled")))?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, key)
            .map_err(|e| Error::Internal(e.into()))
    }
}

type ClaimMap = serde_json::Map<String, serde_json::Value>;

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
