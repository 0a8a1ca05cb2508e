//! JWT bearer auth: HS256 with `JWT_SECRET`. An `admin` token manages everything; a `tenant`
//! token is bound to one tenant id and reaches only that tenant's routes.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{
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

pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn hs256(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Verifies an `Authorization` header value (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal> {
        let header = header.ok_or_else(|| Error::Unauthenticated("missing bearer token".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Error::Unauthenticated("expected 'Authorization: Bearer <token>'".into())
            })?;
        self.verify(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<Principal> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                Error::Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired".into(),
                    ErrorKind::InvalidSignature => "token signature is invalid".into(),
                    _ => "token is invalid".into(),
                })
            })?;
        let claims = data.claims;
        match (claims.role, claims.tenant_id) {
            (Role::Admin, _) => Ok(Principal::Admin {
                subject: claims.sub,
            }),
            (Role::Tenant, Some(tenant_id)) => Ok(Principal::Tenant {
                subject: claims.sub,
                tenant_id,
            }),
            (Role::Tenant, None) => Err(Error::Unauthenticated(
                "a tenant token needs a tenant_id claim".into(),
            )),
        }
    }

    /// Signs claims (local tokens, tests).
    pub fn mint(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::Internal(e.into()))
    }
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

    #[test]
    fn tokens_round_trip_and_scope() {
        let auth = Authenticator::hs256("s3cret");
        let t = TenantId::generate();
        let token = auth.mint(&Claims::tenant(t, 60)).unwrap();
        let p = auth
            .verify_header(Some(&format!("Bearer {token}")))
            .unwrap();
        assert!(p.require_tenant(t).is_ok());
        assert_eq!(
            p.require_tenant(TenantId::generate()).unwrap_err().code(),
            "forbidden"
        );
        assert_eq!(p.require_admin().unwrap_err().code(), "forbidden");

        let admin = auth
            .verify(&auth.mint(&Claims::admin("ops", 60)).unwrap())
            .unwrap();
        assert!(admin.require_admin().is_ok() && admin.require_tenant(t).is_ok());
    }

    #[test]
    fn bad_tokens_are_unauthenticated() {
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
            let err = auth.verify_header(header.as_deref()).unwrap_err();
            assert_eq!(err.code(), "unauthorized", "{header:?}");
        }
    }

    mod properties {
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
                let principal = auth.verify(&auth.mint(&c).unwrap()).unwrap();
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
                prop_assert_eq!(auth.verify(&token).unwrap_err().code(), "unauthorized");
            }

            #[test]
            fn another_secret_is_refused(c in claims(), secret in "\\PC{1,20}") {
                prop_assume!(secret != "property-secret");
                let token = Authenticator::hs256(&secret).mint(&c).unwrap();
                let auth = Authenticator::hs256("property-secret");
                prop_assert_eq!(auth.verify(&token).unwrap_err().code(), "unauthorized");
            }

            #[test]
            fn garbage_headers_are_refused(h in "\\PC{0,200}") {
                let auth = Authenticator::hs256("property-secret");
                prop_assert_eq!(auth.verify_header(Some(&h)).unwrap_err().code(), "unauthorized");
            }
        }
    }
}
