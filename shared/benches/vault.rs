//! Vault throughput and memory, printed (not asserted): `cargo bench -p eurooffice-connector`.
//!
//! Throughput runs the whole put and get pipelines on one core (a current-thread runtime) beside
//! `memcpy` and `aes-gcm` alone on the same buffer. Put writes into providers that take the
//! bytes and drop them, as an upload does, so it measures the pipeline (encrypt + encode + hash)
//! rather than a store; get reads from in-memory providers. The lower table times the put's
//! three stages alone on the same buffer: their sum bounds what any put can reach here. Peak
//! memory is measured in child processes (one per scenario) from the kernel's high-water mark,
//! above the document's own size.

use std::sync::Arc;
use std::time::Instant;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use bytes::Bytes;
use eurooffice_connector::keys::LocalKeyProvider;
use eurooffice_connector::library::bytes_stream;
use eurooffice_connector::storage::{ByteStream, DirStore, MemStore, ObjectMeta, ObjectStore};
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

/// A provider that takes a shard's bytes and keeps nothing: the put pipeline without a store.
struct Sink(String);

#[async_trait::async_trait]
impl ObjectStore for Sink {
    fn id(&self) -> &str {
        &self.0
    }
    async fn put(&self, _key: &str, mut body: ByteStream) -> eurooffice_connector::Result<u64> {
        let mut n = 0;
        while let Some(chunk) = body.next().await {
            n += chunk?.len() as u64;
        }
        Ok(n)
    }
    async fn get(&self, _key: &str, _offset: u64) -> eurooffice_connector::Result<ByteStream> {
        Err(eurooffice_connector::Error::NotFound("object"))
    }
    async fn head(&self, _key: &str) -> eurooffice_connector::Result<Option<ObjectMeta>> {
        Ok(None)
    }
    async fn delete(&self, _key: &str) -> eurooffice_connector::Result<()> {
        Ok(())
    }
    async fn list(&self, _prefix: &str) -> eurooffice_connector::Result<Vec<ObjectMeta>> {
        Ok(Vec::new())
    }
}

fn sink_vault(dir: &std::path::Path) -> Vault {
    let keys = Arc::new(LocalKeyProvider::open(&dir.join("master.key")).expect("key"));
    let providers: Vec<Arc<dyn ObjectStore>> = (0..6)
        .map(|i| Arc::new(Sink(format!("p{i}"))) as Arc<dyn ObjectStore>)
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

fn timed<F: FnOnce()>(f: F) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| timed(&mut f)).fold(f64::MAX, f64::min)
}

/// Seconds each put stage takes for a whole document, run stripe by stripe on reused buffers.
struct Floor {
    seal: f64,
    encode: f64,
    hash: f64,
}

impl Floor {
    fn total(&self) -> f64 {
        self.seal + self.encode + self.hash
    }
}

fn stage_floor(doc: &[u8], cipher: &Aes256Gcm) -> Floor {
    const K: usize = 4;
    let segment = VaultSettings::default().segment_bytes as usize;
    let piece = segment + 16;
    let rs = reed_solomon_erasure::galois_8::ReedSolomon::new(K, 2).expect("rs");
    let mut stripe = vec![0u8; 6 * piece];
    let run = |stage: usize, stripe: &mut Vec<u8>| {
        best_of(5, || {
            for (s, plain) in doc.chunks(K * segment).enumerate() {
                let (data, parity) = stripe.split_at_mut(K * piece);
                match stage {
                    0 => {
                        for (j, seg) in plain.chunks(segment).enumerate() {
                            let out = &mut data[j * piece..][..seg.len()];
                            let mut nonce = [0u8; 12];
                            nonce[..8].copy_from_slice(&((s * K + j) as u64).to_be_bytes());
                            let buf = aes_gcm::aead::inout::InOutBuf::new(seg, out).expect("len");
                            let tag = cipher
                                .encrypt_inout_detached(&Nonce::from(nonce), b"", buf)
                                .expect("seal");
                            data[j * piece + seg.len()..][..16].copy_from_slice(&tag);
                        }
                    }
                    1 => {
                        let d: Vec<&[u8]> = data.chunks(piece).collect();
                        let mut p: Vec<&mut [u8]> = parity.chunks_mut(piece).collect();
                        rs.encode_sep(&d, &mut p).expect("encode");
                    }
                    _ => {
                        for p in stripe.chunks(piece) {
                            std::hint::black_box(blake3::hash(p));
                        }
                    }
                }
            }
        })
    };
    Floor {
        seal: run(0, &mut stripe),
        encode: run(1, &mut stripe),
        hash: run(2, &mut stripe),
    }
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
            std::fs::write(&manifest_path, serde_json::to_vec(&stored).expect("json"))
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
    // For a profiler: `perf record -e cpu-clock <bench binary> --profile-put [MiB]`.
    if let Some(i) = args.iter().position(|a| a == "--profile-put") {
        let mib: usize = args.get(i + 1).and_then(|a| a.parse().ok()).unwrap_or(64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let sink = sink_vault(dir.path());
        let doc = data(mib * MIB);
        // 0 MiB: an empty document, for the fixed cost of a put.
        let rounds = 2560usize.checked_div(mib).unwrap_or(50_000).max(1);
        for _ in 0..rounds {
            rt.block_on(sink.put("f", "g", bytes_stream(doc.clone()), u64::MAX))
                .expect("put");
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let v = vault(dir.path(), false);
    let sink = sink_vault(dir.path());
    println!(
        "vault pipeline, single core, 4+2 shards, {} KiB segments",
        VaultSettings::default().segment_bytes / 1024
    );
    println!("(each figure the best of rounds that run all four in turn, so drift hits all alike)");
    println!(
        "{:>6}  {:>10} {:>10} {:>10} {:>10}  {:>11} {:>11}",
        "size", "memcpy", "aes-gcm", "put", "get", "put/aes-gcm", "get/aes-gcm"
    );
    let mut stages = Vec::new();
    for mib in [1usize, 16, 64] {
        let doc = data(mib * MIB);
        let manifest = rt
            .block_on(v.put("f", "g", bytes_stream(doc.clone()), u64::MAX))
            .expect("put");
        let mut copy = vec![0u8; doc.len()];
        let cipher = Aes256Gcm::new(&[7u8; 32].into());
        let (mut memcpy, mut aes, mut put, mut get) = (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..(512 / mib).clamp(8, 64) {
            memcpy = memcpy.min(timed(|| {
                copy.copy_from_slice(std::hint::black_box(&doc));
                std::hint::black_box(&copy);
            }));
            aes = aes.min(timed(|| {
                for (i, seg) in copy.chunks_mut(MIB).enumerate() {
                    let mut nonce = [0u8; 12];
                    nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    let _ = cipher
                        .encrypt_inout_detached(&Nonce::from(nonce), b"", seg.into())
                        .expect("seal");
                }
            }));
            put = put.min(timed(|| {
                rt.block_on(sink.put("f", "g", bytes_stream(doc.clone()), u64::MAX))
                    .expect("put");
            }));
            get = get.min(timed(|| {
                rt.block_on(async {
                    let mut s = v.get("f", &manifest).await.expect("get");
                    while let Some(c) = s.next().await {
                        std::hint::black_box(c.expect("chunk"));
                    }
                })
            }));
        }
        let (m, a, p, g) = (
            gbps(doc.len(), memcpy),
            gbps(doc.len(), aes),
            gbps(doc.len(), put),
            gbps(doc.len(), get),
        );
        println!(
            "{:>4}MiB  {:>6.2}GB/s {:>6.2}GB/s {:>6.2}GB/s {:>6.2}GB/s  {:>10.1}% {:>10.1}%",
            mib,
            m,
            a,
            p,
            g,
            100.0 * p / a,
            100.0 * g / a
        );
        stages.push((mib, stage_floor(&doc, &cipher), put, aes));
    }
    let empty = best_of(50, || {
        rt.block_on(sink.put("f", "g", bytes_stream(Bytes::new()), u64::MAX))
            .expect("put");
    });
    println!(
        "fixed cost of a put (an empty document): {:.0} us",
        empty * 1e6
    );
    println!();
    println!(
        "put stages back to back on one stripe's buffers (seal from the input, 4+2 encode, BLAKE3 of"
    );
    println!("all six pieces; no I/O, no copies, cache-warm): the floor any put pipeline has here");
    println!(
        "{:>6}  {:>10} {:>10} {:>10} {:>10}  {:>11} {:>11}",
        "size", "seal", "encode", "hash", "floor", "floor/aes", "put/floor"
    );
    for (mib, floor, put, aes) in stages {
        let len = mib * MIB;
        println!(
            "{:>4}MiB  {:>6.2}GB/s {:>6.2}GB/s {:>6.2}GB/s {:>6.2}GB/s  {:>10.1}% {:>10.1}%",
            mib,
            gbps(len, floor.seal),
            gbps(len, floor.encode),
            gbps(len, floor.hash),
            gbps(len, floor.total()),
            100.0 * aes / floor.total(),
            100.0 * floor.total() / put
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
