//! The real function binaries under the Lambda runtime API, without Docker: `cargo lambda
//! watch` serves them, and the test invokes create-session and callback with the fixture
//! events and downloads a 20 MiB document through serve-file's streaming path, all against the
//! AWS emulators. Runs when the harness sets SKYE_TEST_CARGO_LAMBDA=1 (it installs
//! cargo-lambda); then a failure to start is a test failure, not a skip.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use skye_integration_tests::docserver::DocServerSim;
use skye_integration_tests::{Backend, DOCSERVER_SECRET, env, pseudo_random, settings};

struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

async fn invoke(client: &reqwest::Client, base: &str, function: &str, event: &Value) -> Value {
    let url = format!("{base}/2015-03-31/functions/{function}/invocations");
    let response = client.post(&url).json(event).send().await.expect("invoke");
    assert!(
        response.status().is_success(),
        "{function}: {}",
        response.status()
    );
    response.json().await.expect("API Gateway response JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_binaries_run_under_the_lambda_runtime() {
    if std::env::var("SKYE_TEST_CARGO_LAMBDA").as_deref() != Ok("1") {
        eprintln!(
            "cargo lambda watch test not requested (SKYE_TEST_CARGO_LAMBDA unset): run the README test command"
        );
        return;
    }
    let env = env(Backend::Emulator)
        .await
        .expect("SKYE_TEST_CARGO_LAMBDA=1 needs the emulators");
    let sim = DocServerSim::start(DOCSERVER_SECRET).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let extra = [
        ("EUROOFFICE_INTERNAL_URL", sim.internal_url()),
        (
            "EUROOFFICE_CALLBACK_URL",
            format!("{base}/lambda-url/callback"),
        ),
        (
            "SKYE_FILE_URL_BASE",
            format!("{base}/lambda-url/serve-file"),
        ),
    ];
    let vars = settings(Backend::Emulator, &env.dir, &env.run_id, &extra);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = Command::new("cargo");
    command
        .current_dir(&root)
        .args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .args(["--disable-cors", "--ignore-changes", "--timeout", "600"])
        .envs(&vars)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _watch = Watch(
        command
            .spawn()
            .expect("cargo lambda is installed (the harness installs it)"),
    );

    let original = pseudo_random(20 * 1024 * 1024, 20);
    let file = eurooffice_connector::library::import(
        &env.app,
        "alice",
        "big.xlsx",
        eurooffice_connector::library::bytes_stream(Bytes::from(original.clone())),
    )
    .await
    .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "cargo lambda watch did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // create-session, with the API Gateway fixture event (authorizer claims identify alice)
    let fixture = std::fs::read_to_string(root.join("events/create-session.json"))
        .unwrap()
        .replace("FILE_ID", &file.file_id);
    let response = invoke(
        &client,
        &base,
        "create-session",
        &serde_json::from_str(&fixture).unwrap(),
    )
    .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let opened: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(opened["config"]["editorConfig"]["user"]["id"], "alice");
    let document_url = opened["config"]["document"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let session_id = opened["session_id"].as_str().unwrap().to_string();
    assert!(document_url.starts_with(&format!(
        "{base}/lambda-url/serve-file/api/eurooffice/file/"
    )));

    // serve-file, streamed through the runtime's response streaming
    let (status, served) = sim.download(&document_url).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(served.len(), original.len());
    assert!(
        served == original,
        "20 MiB arrive intact through the streaming path"
    );

    // callback, with the function-URL fixture event carrying a force-save
    let edited = pseudo_random(1024 * 1024, 21);
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("events/callback.json"))
            .unwrap()
            .replace("SESSION_ID", &session_id),
    )
    .unwrap();
    let body = json!({
        "key": opened["config"]["document"]["key"], "status": 6, "url": sim.publish(Bytes::from(edited.clone()), "xlsx"),
        "filetype": "xlsx", "lastsave": "2026-12-04T13:00:00Z", "users": ["alice"], "forcesavetype": 1,
    });
    let mut signed = body.clone();
    signed["token"] = json!(sim.token(&body));
    event["body"] = json!(signed.to_string());
    event["headers"]["authorization"] =
        json!(format!("Bearer {}", sim.token(&json!({"payload": body}))));
    let response = invoke(&client, &base, "callback", &event).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(
        serde_json::from_str::<Value>(response["body"].as_str().unwrap()).unwrap(),
        json!({"error": 0})
    );
    let versions = env.app.catalog.versions(&file.file_id).await.unwrap();
    assert_eq!(versions.len(), 2, "the force-save became version 2");
    let (_, stream) = eurooffice_connector::library::open_version(&env.app, &file.file_id, Some(2))
        .await
        .unwrap();
    assert!(
        eurooffice_connector::storage::objects::collect_stream(stream, u64::MAX)
            .await
            .unwrap()
            == edited
    );
}
