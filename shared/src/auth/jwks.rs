//! Keys from a JWKS URL (an identity provider's), refreshed after the TTL and on an unknown
//! `kid`. No verification waits behind a fetch it does not need: the cache is read under a lock
//! no fetch holds, a stale cache is refreshed beside the requests that use it, and only a token
//! whose key is missing waits, for the one fetch in flight.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use super::{PublicKey, keys_from_jwks};

pub(super) struct RemoteJwks {
    url: String,
    http: reqwest::Client,
    ttl: Duration,
    min_refresh: Duration,
    /// Held only to read or replace the cache, never across a fetch.
    cache: Mutex<Cache>,
    /// Held by the one fetch in flight.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Clone, Default)]
struct Cache {
    keys: Arc<Vec<PublicKey>>,
    fetched_at: Option<Instant>,
    /// When the last fetch ended, successful or not: while the provider is down, requests do
    /// not each start a fetch of their own.
    attempted_at: Option<Instant>,
    /// Fetches ended so far, so a request that waited for one knows it has its answer.
    attempts: u64,
}

/// What a request needs of the provider.
enum Need {
    Cached,
    /// The cache answers, and is refreshed beside the request.
    Refresh,
    /// The key is missing: wait for a fetch.
    Fetch,
}

impl RemoteJwks {
    pub(super) fn new(url: &str, ttl: Duration, min_refresh: Duration) -> Arc<Self> {
        Arc::new(Self {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            ttl,
            min_refresh,
            cache: Mutex::default(),
            fetching: Arc::default(),
        })
    }

    /// The keys to try for a token naming `kid` (or none).
    pub(super) async fn keys(this: &Arc<Self>, kid: Option<&str>) -> Arc<Vec<PublicKey>> {
        let seen = this.cache();
        match this.need(&seen, kid) {
            Need::Cached => seen.keys,
            Need::Refresh => {
                this.refresh_beside();
                seen.keys
            }
            Need::Fetch => {
                let _turn = this.fetching.lock().await;
                // A fetch that ended while this request waited is its answer (single flight).
                if this.cache().attempts == seen.attempts {
                    this.fetch().await;
                }
                this.cache().keys
            }
        }
    }

    /// A missing key is fetched when the last fetch is older than `min_refresh` (so unknown
    /// kids cannot make us hammer the provider), or awaited when a fetch is in flight; a stale
    /// cache is refreshed on the same terms.
    fn need(&self, cache: &Cache, kid: Option<&str>) -> Need {
        let have_key = match kid {
            Some(k) => cache.keys.iter().any(|key| key.kid.as_deref() == Some(k)),
            None => cache.fetched_at.is_some(),
        };
        let may_refresh = cache
            .attempted_at
            .is_none_or(|t| t.elapsed() >= self.min_refresh);
        let stale = cache.fetched_at.is_none_or(|t| t.elapsed() >= self.ttl);
        if !have_key && (may_refresh || self.fetching.try_lock().is_err()) {
            Need::Fetch
        } else if stale && may_refresh {
            Need::Refresh
        } else {
            Need::Cached
        }
    }

    /// Starts a fetch in the background unless one is in flight (which then is the refresh).
    fn refresh_beside(self: &Arc<Self>) {
        let Ok(turn) = Arc::clone(&self.fetching).try_lock_owned() else {
            return;
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.fetch().await;
            drop(turn);
        });
    }

    /// Fetches the document into the cache; the caller holds `fetching`.
    async fn fetch(&self) {
        let result = self.download().await;
        let now = Instant::now();
        let failed = {
            let mut cache = self.lock();
            cache.attempted_at = Some(now);
            cache.attempts += 1;
            match result {
                Ok(keys) => {
                    cache.keys = Arc::new(keys);
                    cache.fetched_at = Some(now);
                    None
                }
                Err(e) => Some(e),
            }
        };
        if let Some(e) = failed {
            tracing::warn!(error = %e, "cannot fetch the JWKS; keeping the cached keys");
        }
    }

    async fn download(&self) -> anyhow::Result<Vec<PublicKey>> {
        let text = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        keys_from_jwks(&text)
    }

    fn cache(&self) -> Cache {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // No code panics while holding it; a poisoned cache is still a whole one.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        sync::{Notify, watch},
    };

    use super::*;
    use crate::{
        auth::{Authenticator, Claims},
        config::JwtConfig,
    };

    /// A JWKS endpoint that answers its first request at once and holds every later one
    /// until released (or for 10 s), so a test can keep a fetch in flight.
    struct HeldJwks {
        url: String,
        requests: Arc<AtomicUsize>,
        /// A held request arrived.
        arrived: Arc<Notify>,
        /// A held request was answered.
        answered: Arc<AtomicBool>,
        release: watch::Sender<bool>,
    }

    impl HeldJwks {
        async fn start(first: Value, later: Value) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
            let requests = Arc::new(AtomicUsize::new(0));
            let arrived = Arc::new(Notify::new());
            let answered = Arc::new(AtomicBool::new(false));
            let (release, released) = watch::channel(false);
            let (n, a, done) = (requests.clone(), arrived.clone(), answered.clone());
            tokio::spawn(async move {
                loop {
                    let (mut conn, _) = listener.accept().await.unwrap();
                    let held = n.fetch_add(1, Ordering::SeqCst) > 0;
                    let body = if held { &later } else { &first }.to_string();
                    let (a, done, mut released) = (a.clone(), done.clone(), released.clone());
                    tokio::spawn(async move {
                        let mut request = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !request.ends_with(b"\r\n\r\n") {
                            let read = conn.read(&mut buf).await.unwrap();
                            assert!(read > 0, "the client hung up");
                            request.extend_from_slice(&buf[..read]);
                        }
                        if held {
                            a.notify_one();
                            let release = released.wait_for(|r| *r);
                            let _ = tokio::time::timeout(Duration::from_secs(10), release).await;
                        }
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        conn.write_all(response.as_bytes()).await.unwrap();
                        if held {
                            done.store(true, Ordering::SeqCst);
                        }
                    });
                }
            });
            Self {
                url,
                requests,
                arrived,
                answered,
                release,
            }
        }
    }

    /// A new P-256 key: the signing key and its public JWK under `kid`.
    fn ec_key(kid: &str) -> (EncodingKey, Value) {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        (key, serde_json::to_value(jwk).unwrap())
    }

    fn token(key: &EncodingKey, kid: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &Claims::admin("idp-user", 600), key).unwrap()
    }

    fn authenticator(url: &str, ttl: Duration) -> Arc<Authenticator> {
        let jwt = JwtConfig {
            jwks_url: Some(url.into()),
            jwks_cache_ttl: ttl,
            role_claim: "role".into(),
            tenant_claim: "tenant_id".into(),
            ..Default::default()
        };
        Arc::new(Authenticator::from_config("unused", &jwt).unwrap())
    }

    /// An unknown kid fetches the JWKS (once, however many tokens name it); meanwhile a
    /// token whose key is cached verifies without waiting for that fetch.
    #[tokio::test]
    async fn a_cached_key_verifies_while_an_unknown_kid_is_fetched() {
        let ((k1, jwk1), (k2, jwk2)) = (ec_key("k1"), ec_key("k2"));
        let jwks = HeldJwks::start(
            json!({ "keys": [jwk1.clone()] }),
            json!({ "keys": [jwk1, jwk2] }),
        )
        .await;
        let auth = authenticator(&jwks.url, Duration::from_secs(600));
        auth.verify(&token(&k1, "k1")).await.unwrap();

        let unknown: Vec<_> = (0..2)
            .map(|_| {
                let (auth, t) = (auth.clone(), token(&k2, "k2"));
                tokio::spawn(async move { auth.verify(&t).await })
            })
            .collect();
        jwks.arrived.notified().await;
        auth.verify(&token(&k1, "k1")).await.unwrap();
        assert!(
            !jwks.answered.load(Ordering::SeqCst),
            "the cached key waited for the fetch"
        );

        jwks.release.send(true).unwrap();
        for verify in unknown {
            verify.await.unwrap().unwrap();
        }
        assert_eq!(jwks.requests.load(Ordering::SeqCst), 2, "one fetch for k2");
    }

    /// Past the TTL a cached key still verifies at once; the refresh runs beside it, one
    /// at a time.
    #[tokio::test]
    async fn a_stale_cache_is_refreshed_without_waiting() {
        let (k1, jwk1) = ec_key("k1");
        let doc = json!({ "keys": [jwk1] });
        let jwks = HeldJwks::start(doc.clone(), doc).await;
        let auth = authenticator(&jwks.url, Duration::ZERO);
        auth.verify(&token(&k1, "k1")).await.unwrap();
        for _ in 0..3 {
            auth.verify(&token(&k1, "k1")).await.unwrap();
        }
        jwks.arrived.notified().await;
        assert!(
            !jwks.answered.load(Ordering::SeqCst),
            "a stale cache waited for the fetch"
        );
        assert_eq!(
            jwks.requests.load(Ordering::SeqCst),
            2,
            "one refresh at a time"
        );
        jwks.release.send(true).unwrap();
    }
}
