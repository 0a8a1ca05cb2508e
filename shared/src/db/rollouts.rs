//! Rollouts of the template function's version to the tenant functions (system-wide): one row
//! per template version (its code hash and configuration digest), so a version is rolled out
//! once however many provisioner instances start; and the claim of periodic control passes.

use std::time::Duration;

use super::Pool;
use crate::error::Result;

/// A template function's version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateVersion {
    pub template_function: String,
    pub code_sha256: String,
    pub config_digest: String,
}

/// A request left unfinished this long (its job lost or timed out) may be requested again.
const STALE_REQUEST_SECS: f64 = 900.0;

/// Records that `version` should be rolled out; `true` when the caller should submit the job:
/// the version is new, or an earlier request never finished and is stale. Concurrent callers
/// (cold starts of a new deploy) get `true` once.
pub async fn request(pool: &Pool, v: &TemplateVersion) -> Result<bool> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "INSERT INTO function_rollouts (template_function, code_sha256, config_digest)
             VALUES ($1, $2, $3)
             ON CONFLICT (template_function, code_sha256, config_digest) DO UPDATE
                 SET requested_at = now(), state = 'requested'
                 WHERE function_rollouts.state <> 'done'
                   AND function_rollouts.requested_at < now() - make_interval(secs => $4)
             RETURNING true",
            &[
                &v.template_function,
                &v.code_sha256,
                &v.config_digest,
                &STALE_REQUEST_SECS,
            ],
        )
        .await?;
    Ok(row.is_some())
}

/// Whether `version` was rolled out to every tenant function.
pub async fn is_done(pool: &Pool, v: &TemplateVersion) -> Result<bool> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "SELECT 1 FROM function_rollouts WHERE template_function = $1 AND code_sha256 = $2
                 AND config_digest = $3 AND state = 'done'",
            &[&v.template_function, &v.code_sha256, &v.config_digest],
        )
        .await?
        .is_some())
}

/// What one rollout run did.
pub struct Outcome<'a> {
    pub state: &'a str,
    pub functions: usize,
    pub updated: usize,
    pub failed: usize,
    pub error: Option<&'a str>,
}

pub async fn finish(pool: &Pool, v: &TemplateVersion, o: &Outcome<'_>) -> Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO function_rollouts (template_function, code_sha256, config_digest, state,
                 finished_at, functions, updated, failed, error)
             VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8)
             ON CONFLICT (template_function, code_sha256, config_digest) DO UPDATE
                 SET state = $4, finished_at = now(), functions = $5, updated = $6, failed = $7,
                     error = $8",
            &[
                &v.template_function,
                &v.code_sha256,
                &v.config_digest,
                &o.state,
                &(o.functions as i32),
                &(o.updated as i32),
                &(o.failed as i32),
                &o.error,
            ],
        )
        .await?;
    Ok(())
}

/// Takes the template's rollout lock for the session `client` (a connection of its own, not
/// the pool's: the lock lasts until it closes), or `false` when another rollout of the same
/// template holds it.
pub async fn try_lock(client: &tokio_postgres::Client, template: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended('msgsvc-rollout:' || $1, 0))",
            &[&template],
        )
        .await?
        .get(0))
}

/// Claims the periodic pass `name` when it last ran at least `every` ago (or never): `true`
/// for exactly one of concurrent callers.
pub async fn claim_pass(pool: &Pool, name: &str, every: Duration) -> Result<bool> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "INSERT INTO control_passes (name, last_run_at) VALUES ($1, now())
             ON CONFLICT (name) DO UPDATE SET last_run_at = now()
                 WHERE control_passes.last_run_at < now() - make_interval(secs => $2)
             RETURNING true",
            &[&name, &every.as_secs_f64()],
        )
        .await?
        .is_some())
}
