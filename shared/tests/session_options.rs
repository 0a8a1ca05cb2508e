//! The pool's startup `options` against the local server: by default every pooled session plans
//! generically (`plan_cache_mode=force_generic_plan`); with `DATABASE_OPTIONS` set but empty, as
//! the template sets it behind RDS Proxy (which refuses the `options` startup parameter and
//! runs the same SET as its InitQuery), no option is sent and the session keeps the server's
//! own setting.

use shared::{Config, config::DbSslMode, db};

fn url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/msgsvc_test".into())
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/postgres"))
        .unwrap()
}

fn config(options: Option<&str>) -> Config {
    let url = url();
    Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(url.clone()),
        "DATABASE_OPTIONS" => options.map(str::to_string),
        _ => None,
    })
    .unwrap()
}

async fn pooled_plan_cache_mode(config: &Config) -> String {
    let pool = db::pool(config).unwrap();
    let client = pool.get().await.unwrap();
    let row = client.query_one("SHOW plan_cache_mode", &[]).await.unwrap();
    row.get(0)
}

#[tokio::test]
async fn pooled_sessions_plan_generically_unless_options_are_emptied() {
    let default = config(None);
    assert_eq!(default.database_tls.mode, DbSslMode::Disable);
    assert_eq!(pooled_plan_cache_mode(&default).await, "force_generic_plan");

    // A connection that sends no options shows the server's setting.
    let plain = db::tls::connect(&url(), &default.database_tls)
        .await
        .unwrap();
    let server: String = plain
        .query_one("SHOW plan_cache_mode", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        server, "force_generic_plan",
        "the server itself forces generic plans"
    );
    assert_eq!(pooled_plan_cache_mode(&config(Some(""))).await, server);
}
