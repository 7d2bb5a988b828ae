//! A 100 MiB document opens (streamed to Document Server) and saves (streamed into the vault),
//! on each backend in turn. Prints the process's peak memory above its starting point; the
//! benchmark (`cargo bench -p eurooffice-connector`) measures the connector alone.

use bytes::Bytes;
use skye_integration_tests::rig::rig;
use skye_integration_tests::{Backend, env, pseudo_random};

const SIZE: usize = 100 * 1024 * 1024;

fn resident_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_document_opens_and_saves() {
    for backend in [Backend::Embedded, Backend::Emulator] {
        let Some(env) = env(backend).await else {
            continue;
        };
        let rig = rig(env).await;
        let original = pseudo_random(SIZE, 1);
        let file_id = rig.import("big.docx", &original).await;
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = resident_kib("VmRSS:");
        let opened = rig.opened("alice", &file_id).await;
        let (status, served) = rig
            .sim
            .download(opened["config"]["document"]["url"].as_str().unwrap())
            .await;
        assert_eq!(status.as_u16(), 200);
        assert_eq!(served.len(), SIZE);
        assert!(served == original, "served bytes are the stored bytes");
        drop(served);
        let mut edited = original;
        edited[SIZE / 2] ^= 0xff;
        let edited = Bytes::from(edited);
        let (status, reply) = rig
            .save(&opened, 2, &edited, "docx", "2026-12-04T12:00:00Z")
            .await;
        assert_eq!(
            (status.as_u16(), reply),
            (200, serde_json::json!({"error": 0}))
        );
        assert!(
            rig.export(&file_id, 2).await == edited,
            "saved version exports byte-identical"
        );
        let peak = resident_kib("VmHWM:");
        // This process also plays Document Server (it holds its own copies of the document).
        println!(
            "{backend:?}: 100 MiB open + save, process peak {:.0} MiB above {:.0} MiB resident before",
            peak.saturating_sub(before) as f64 / 1024.0,
            before as f64 / 1024.0
        );
    }
}
