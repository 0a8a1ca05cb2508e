//! Verification keys: PEM public keys from files, and a JWKS document (URL or file) that is
//! cached and refetched when a token names a `kid` it does not hold, so a new key works as soon
//! as the identity provider publishes it and a removed key stops working at the next refetch.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm},
};
use tokio::sync::RwLock;

/// One public key and the single algorithm it verifies.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Reads a PEM public key: RSA keys verify RS256, P-256 keys ES256.
pub fn from_pem_file(kid: Option<String>, path: &Path) -> anyhow::Result<VerifyKey> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (alg, key) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        (Algorithm::RS256, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        (Algorithm::ES256, key)
    } else {
        bail!("{} is not an RSA or EC public key in PEM", path.display());
    };
    Ok(VerifyKey { kid, alg, key })
}

/// The RS256 and ES256 keys of a JWKS document; others (encryption keys, other algorithms) are
/// skipped.
pub fn from_jwks(json: &[u8]) -> anyhow::Result<Vec<VerifyKey>> {
    let set: JwkSet = serde_json::from_slice(json).context("not a JWKS document")?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
    }
    Ok(keys)
}

/// A JWKS source with its cached keys.
pub struct Jwks {
    source: String,
    http: reqwest::Client,
    /// Shortest time between two fetches, so tokens with made-up `kid`s cannot make us hammer
    /// the identity provider.
    min_refetch: Duration,
    /// Keys are refetched after this even when no unknown `kid` shows up.
    max_age: Duration,
    cache: RwLock<Cached>,
}

struct Cached {
    keys: Arc<Vec<VerifyKey>>,
    fetched: Option<Instant>,
}

impl Jwks {
    pub fn new(source: String, http: reqwest::Client, min_refetch: Duration) -> Self {
        Self {
            source,
            http,
            min_refetch,
            max_age: Duration::from_secs(600),
            cache: RwLock::new(Cached {
                keys: Arc::default(),
                fetched: None,
            }),
        }
    }

    /// The current keys; refetched when stale, or when `want_kid` is not among them and the
    /// last fetch is older than the minimum interval.
    pub async fn keys(&self, want_kid: Option<&str>) -> anyhow::Result<Arc<Vec<VerifyKey>>> {
        {
            let cache = self.cache.read().await;
            if !self.should_fetch(&cache, want_kid) {
                return Ok(cache.keys.clone());
            }
        }
        let mut cache = self.cache.write().await;
        if self.should_fetch(&cache, want_kid) {
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(source = %self.source, keys = keys.len(), "JWKS loaded");
                    cache.keys = Arc::new(keys);
                }
                // Keep serving the keys we have; the next fetch is after min_refetch.
                Err(e) if cache.fetched.is_some() => {
                    tracing::warn!(source = %self.source, error = format!("{e:#}"), "JWKS refetch failed");
                }
                Err(e) => {
                    cache.fetched = Some(Instant::now());
                    return Err(e);
                }
            }
            cache.fetched = Some(Instant::now());
        }
        Ok(cache.keys.clone())
    }

    fn should_fetch(&self, cache: &Cached, want_kid: Option<&str>) -> bool {
        let Some(fetched) = cache.fetched else {
            return true;
        };
        let age = fetched.elapsed();
        let unknown =
            want_kid.is_some_and(|kid| !cache.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        age >= self.max_age || (unknown && age >= self.min_refetch)
    }

    async fn fetch(&self) -> anyhow::Result<Vec<VerifyKey>> {
        let body = if self.source.starts_with("http://") || self.source.starts_with("https://") {
            let response = self
                .http
                .get(&self.source)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .with_context(|| format!("cannot fetch {}", self.source))?;
            response.bytes().await?.to_vec()
        } else {
            tokio::fs::read(&self.source)
                .await
                .with_context(|| format!("cannot read {}", self.source))?
        };
        from_jwks(&body)
    }
}
