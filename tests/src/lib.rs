//! Test support: backends to run every suite against (embedded, and the AWS emulators when the
//! harness started them), a provider wrapper that injects faults, and a Document Server
//! simulator that speaks the protocol over real HTTP.

pub mod docserver;
pub mod faults;
pub mod rig;

use std::collections::HashMap;
use std::sync::Arc;

use eurooffice_connector::app::Deps;
use eurooffice_connector::storage::ObjectStore;
use eurooffice_connector::vault::Vault;
use eurooffice_connector::{App, Config};
use tempfile::TempDir;

/// A 32+ byte secret shared with the simulated Document Server.
pub const DOCSERVER_SECRET: &str = "test-docserver-secret-0123456789abcdef";
pub const USER_SECRET: &str = "test-user-secret-0123456789abcdef0123";

/// True when the harness started the emulators: then their tests must run, and fail loudly.
pub fn emulators_expected() -> bool {
    std::env::var("SKYE_TEST_EMULATORS").is_ok_and(|v| v == "1")
}

fn required_env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("SKYE_TEST_EMULATORS=1 but {name} is not set: run the harness"))
}

/// Which family of backends a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Emulator,
}

/// An app on one backend, with whatever keeps it alive.
pub struct TestEnv {
    pub app: App,
    pub backend: Backend,
    pub dir: TempDir,
    /// Prefix that isolates this test's objects in shared emulator buckets.
    pub run_id: String,
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Settings for a backend; `extra` overrides or adds variables.
pub fn settings(
    backend: Backend,
    dir: &TempDir,
    run_id: &str,
    extra: &[(&str, String)],
) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("EUROOFFICE_JWT_SECRET".into(), DOCSERVER_SECRET.into());
    vars.insert("SKYE_USER_JWT_SECRET".into(), USER_SECRET.into());
    vars.insert(
        "SKYE_DATA_DIR".into(),
        dir.path().join("data").display().to_string(),
    );
    match backend {
        Backend::Embedded => {
            vars.insert("SKYE_BACKEND".into(), "local".into());
        }
        Backend::Emulator => {
            vars.insert("SKYE_BACKEND".into(), "aws".into());
            vars.insert(
                "SKYE_KMS_KEY_ID".into(),
                required_env("SKYE_TEST_KMS_KEY_ID"),
            );
            vars.insert(
                "SKYE_FILES_TABLE".into(),
                required_env("SKYE_TEST_FILES_TABLE"),
            );
            vars.insert(
                "SKYE_SESSIONS_TABLE".into(),
                required_env("SKYE_TEST_SESSIONS_TABLE"),
            );
            vars.insert(
                "SKYE_TEMP_BUCKET".into(),
                required_env("SKYE_TEST_TEMP_BUCKET"),
            );
            let buckets = required_env("SKYE_TEST_PROVIDER_BUCKETS");
            let providers: Vec<serde_json::Value> = buckets
                .split(',')
                .take(6)
                .enumerate()
                .map(|(i, bucket)| serde_json::json!({"id": format!("s3-{}", i + 1), "kind": "s3", "bucket": bucket, "prefix": run_id}))
                .collect();
            vars.insert(
                "SKYE_PROVIDERS".into(),
                serde_json::Value::Array(providers).to_string(),
            );
        }
    }
    for (k, v) in extra {
        vars.insert(k.to_string(), v.clone());
    }
    vars
}

/// Builds an app on `backend`, or `None` for the emulator when the harness did not start it.
pub async fn env_with(backend: Backend, extra: &[(&str, String)]) -> Option<TestEnv> {
    init_logs();
    if backend == Backend::Emulator && !emulators_expected() {
        eprintln!(
            "emulator backend not requested (SKYE_TEST_EMULATORS unset): run the README test command"
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let run_id = format!("t{}", eurooffice_connector::ids::random_hex(6));
    let config =
        Config::from_vars(&settings(backend, &dir, &run_id, extra)).expect("test configuration");
    let app = App::from_config(config).await.expect("app on test backend");
    Some(TestEnv {
        app,
        backend,
        dir,
        run_id,
    })
}

pub async fn env(backend: Backend) -> Option<TestEnv> {
    env_with(backend, &[]).await
}

/// The same app with its providers replaced (fault injection).
pub fn with_providers(app: &App, providers: Vec<Arc<dyn ObjectStore>>) -> App {
    let vault = Vault::new(
        app.vault.keys().clone(),
        providers,
        app.vault.settings().clone(),
    )
    .expect("vault");
    rebuild(app, app.config.clone(), vault)
}

/// The same app with another configuration (URLs, limits); stores and clients are shared.
pub fn with_config(app: &App, config: Config) -> App {
    rebuild(app, config, app.vault.clone())
}

fn rebuild(app: &App, config: Config, vault: Vault) -> App {
    App::from_deps(Deps {
        config,
        vault,
        catalog: app.catalog.clone(),
        sessions: app.sessions.clone(),
        temp: app.temp.clone(),
        docserver_secret: app.docserver_secret.clone(),
        users: app.users.clone(),
        http: app.http.clone(),
    })
}

/// Runs an async scenario on both backends as two tests named `embedded` and `emulator`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    let env = $crate::env($crate::Backend::Embedded).await.expect("embedded backend");
                    super::$scenario(env).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn emulator() {
                    if let Some(env) = $crate::env($crate::Backend::Emulator).await {
                        super::$scenario(env).await;
                    }
                }
            }
        )*
    };
}

/// Deterministic pseudo-random bytes (fast, for large test documents).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
