//! Vault throughput and memory, printed (not asserted): `cargo bench -p eurooffice-connector`.
//!
//! Throughput runs the whole put and get pipelines on one core (a current-thread runtime; the
//! stripe work runs on one blocking thread at a time) against in-memory providers, beside
//! `memcpy` and `aes-gcm` alone on the same buffer. Peak memory is measured in child processes
//! (one per scenario) from the kernel's high-water mark, above the document's own size.

use std::sync::Arc;
use std::time::Instant;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use bytes::Bytes;
use eurooffice_connector::keys::LocalKeyProvider;
use eurooffice_connector::library::bytes_stream;
use eurooffice_connector::storage::{DirStore, MemStore, ObjectStore};
use eurooffice_connector::vault::{Vault, VaultSettings};
use futures::StreamExt;

const MIB: usize = 1024 * 1024;

fn vault(dir: &std::path::Path, on_disk: bool) -> Vault {
    let keys = Arc::new(LocalKeyProvider::open(&dir.join("master.key")).expect("key"));
    let providers: Vec<Arc<dyn ObjectStore>> = (0..6)
        .map(|i| {
            let id = format!("p{i}");
            if on_disk {
                Arc::new(DirStore::open(&id, dir.join(&id)).expect("dir")) as Arc<dyn ObjectStore>
            } else {
                Arc::new(MemStore::new(id)) as Arc<dyn ObjectStore>
            }
        })
        .collect();
    Vault::new(keys, providers, VaultSettings::default()).expect("vault")
}

fn data(len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    let mut x = 0x1234_5678_9abc_def1u64;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(v)
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// One scenario in a fresh process, shards on disk (ciphertext only), so the resident set is
/// the document plus what the pipeline holds. `put` stores a document in `dir` and prints KiB
/// above the document's own buffer; `get` (another process) streams it back and prints KiB
/// above its resident set before the read.
fn peak_child(scenario: &str, mib: usize, dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let v = vault(dir, true);
    let manifest_path = dir.join("manifest.json");
    rt.block_on(async {
        if scenario == "put" {
            let doc = data(mib * MIB);
            let baseline = current_rss_kib();
            let stored = v
                .put("f", "g", bytes_stream(doc.clone()), u64::MAX)
                .await
                .expect("put");
            println!("{}", peak_rss_kib().saturating_sub(baseline));
            std::fs::write(
                &manifest_path,
                serde_json::to_vec(&stored.manifest).expect("json"),
            )
            .expect("manifest");
            return;
        }
        let manifest: eurooffice_connector::vault::Manifest =
            serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest"))
                .expect("json");
        let before = current_rss_kib();
        let mut stream = v.get("f", &manifest).await.expect("get");
        let mut n = 0;
        while let Some(chunk) = stream.next().await {
            n += chunk.expect("chunk").len();
        }
        assert_eq!(n, mib * MIB);
        println!("{}", peak_rss_kib().saturating_sub(before));
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--peak") {
        peak_child(
            &args[i + 1],
            args[i + 2].parse().expect("size"),
            std::path::Path::new(&args[i + 3]),
        );
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path(), false);
    println!("vault pipeline, single core, 4+2 shards, 1 MiB segments (best of 3)");
    println!(
        "{:>6}  {:>9} {:>9} {:>9} {:>9}  {:>12} {:>12}",
        "size", "memcpy", "aes-gcm", "put", "get", "put/aes-gcm", "get/aes-gcm"
    );
    for mib in [1usize, 16, 64] {
        let doc = data(mib * MIB);
        let mut copy = vec![0u8; doc.len()];
        let memcpy = best_of(3, || copy.copy_from_slice(&doc));
        let cipher = Aes256Gcm::new(&[7u8; 32].into());
        let aes = best_of(3, || {
            for (i, seg) in copy.chunks_mut(MIB).enumerate() {
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                let _ = cipher
                    .encrypt_inout_detached(&Nonce::from(nonce), b"", seg.into())
                    .expect("seal");
            }
        });
        let mut manifest = None;
        let put = best_of(3, || {
            manifest = Some(
                rt.block_on(v.put("f", "g", bytes_stream(doc.clone()), u64::MAX))
                    .expect("put")
                    .manifest,
            );
        });
        let manifest = manifest.expect("manifest");
        let get = best_of(3, || {
            rt.block_on(async {
                let mut s = v.get("f", &manifest).await.expect("get");
                while let Some(c) = s.next().await {
                    std::hint::black_box(c.expect("chunk"));
                }
            })
        });
        let (m, a, p, g) = (
            gbps(doc.len(), memcpy),
            gbps(doc.len(), aes),
            gbps(doc.len(), put),
            gbps(doc.len(), get),
        );
        println!(
            "{:>4}MiB  {:>6.2}GB/s {:>6.2}GB/s {:>6.2}GB/s {:>6.2}GB/s  {:>11.0}% {:>11.0}%",
            mib,
            m,
            a,
            p,
            g,
            100.0 * p / a,
            100.0 * g / a
        );
    }
    let exe = std::env::current_exe().expect("exe");
    let shards = tempfile::tempdir().expect("dir");
    let shards_dir = shards.path().to_str().expect("utf-8 path");
    for (scenario, what) in [
        ("put", "put, above the document's own buffer"),
        (
            "get",
            "streamed get (own process), above its resident set before",
        ),
    ] {
        let out = std::process::Command::new(&exe)
            .args(["--peak", scenario, "100", shards_dir])
            .output()
            .expect("child");
        let kib: i64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(-1);
        println!(
            "peak memory of a 100 MiB {what}: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}
