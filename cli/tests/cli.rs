//! The `skye` command as a user runs it: a server that starts with no settings at all, and
//! the operator commands round-tripping a document.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn skye(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skye"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SKYE_DATA_DIR", data)
        .env("RUST_LOG", "warn");
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("skye runs");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[test]
fn serve_starts_with_no_settings_and_reports_every_backend_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let port = free_port();
    let mut child = skye(&data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        let answer = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(
                    b"GET /api/eurooffice/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text)
            });
        if let Some(text) = answer {
            break text;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    for kind in [
        "key_provider",
        "catalog",
        "session_store",
        "temp_store",
        "shard_provider",
    ] {
        assert!(health.contains(kind), "{kind} in {health}");
    }
    assert_eq!(
        health.matches("\"shard_provider\"").count(),
        6,
        "six embedded providers"
    );
    // Secrets were generated once, private to the user.
    for secret in ["eurooffice-jwt-secret", "user-jwt-secret", "master.key"] {
        let meta = std::fs::metadata(data.join(secret)).expect(secret);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{secret}");
    }
}

#[test]
fn aws_mode_with_a_missing_setting_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = skye(dir.path())
        .args(["ls"])
        .env("SKYE_BACKEND", "aws")
        .env("EUROOFFICE_JWT_SECRET", "x".repeat(40))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SKYE_KMS_KEY_ID"), "{stderr}");
}

#[test]
fn import_export_versions_share_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let source = dir.path().join("report.docx");
    let content: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &content).unwrap();
    let file_id = run(skye(&data).args(["import", source.to_str().unwrap(), "--owner", "alice"]))
        .trim()
        .to_string();
    assert_eq!(file_id.len(), 22);
    let listing: serde_json::Value =
        serde_json::from_str(&run(skye(&data).args(["ls", "--json"]))).unwrap();
    assert_eq!(listing[0]["file_id"], file_id.as_str());
    assert_eq!(listing[0]["title"], "report.docx");
    let versions: serde_json::Value =
        serde_json::from_str(&run(skye(&data).args(["versions", &file_id, "--json"]))).unwrap();
    assert_eq!(versions[0]["number"], 1);
    assert_eq!(versions[0]["state"], "current");
    assert_eq!(versions[0]["origin"], "import");
    assert_eq!(versions[0]["size"], content.len());
    let out = dir.path().join("out.docx");
    run(skye(&data).args([
        "export",
        &file_id,
        "--version",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read(&out).unwrap() == content,
        "export is byte-identical"
    );
    run(skye(&data).args(["share", &file_id, "bob", "--view"]));
    let listing: serde_json::Value =
        serde_json::from_str(&run(skye(&data).args(["ls", "--json"]))).unwrap();
    assert_eq!(listing[0]["acl"]["bob"], "view");
    run(skye(&data).args(["unshare", &file_id, "bob"]));
    let token = run(skye(&data).args(["token", "--user", "alice", "--name", "Alice"]));
    assert_eq!(token.trim().split('.').count(), 3, "a JWT");
    let scrub = run(skye(&data).args(["scrub", "--gc"]));
    assert!(
        scrub.contains(": ok") && scrub.contains("gc: removed 0"),
        "{scrub}"
    );
    // Damage one shard on disk: scrub reports it, repair fixes it, export still exact.
    let shard = std::fs::read_dir(data.join("providers/local-3/shards"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&shard, b"garbage").unwrap();
    let out2 = skye(&data).args(["scrub"]).output().unwrap();
    assert_eq!(out2.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out2.stdout).contains("repairable"));
    assert!(run(skye(&data).args(["repair"])).contains("repaired"));
    run(skye(&data).args(["scrub"]));
    run(skye(&data).args(["export", &file_id, "-o", out.to_str().unwrap()]));
    assert!(std::fs::read(&out).unwrap() == content);
}
