//! TLS to PostgreSQL against the local server (Debian's PostgreSQL has `ssl = on` with its
//! snake-oil certificate): `require` encrypts, `disable` does not, and `verify-full` refuses a
//! certificate its CA bundle does not vouch for.

use shared::{
    config::{DatabaseTls, DbSslMode},
    db,
};

fn url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/msgsvc_test".into())
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/postgres"))
        .unwrap()
}

async fn session_uses_ssl(tls: &DatabaseTls) -> anyhow::Result<bool> {
    let client = db::tls::connect(&url(), tls).await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn require_encrypts_and_disable_does_not() {
    let require = DatabaseTls {
        mode: DbSslMode::Require,
        root_cert: None,
    };
    let disable = DatabaseTls {
        mode: DbSslMode::Disable,
        root_cert: None,
    };
    assert!(session_uses_ssl(&require).await.expect("TLS connection"));
    assert!(!session_uses_ssl(&disable).await.expect("plain connection"));
}

#[tokio::test]
async fn verify_full_refuses_an_unknown_certificate() {
    // A valid PEM CA that did not sign the server's certificate.
    let dir = std::env::temp_dir().join(format!("msgsvc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("ca.pem");
    let ca = rcgen::generate_simple_self_signed(vec!["elsewhere.example".into()]).unwrap();
    std::fs::write(&bundle, ca.cert.pem()).unwrap();
    let tls = DatabaseTls {
        mode: DbSslMode::VerifyFull,
        root_cert: Some(bundle),
    };
    let err = session_uses_ssl(&tls).await.expect_err("must not trust it");
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "unexpected error: {err:#}"
    );
}
