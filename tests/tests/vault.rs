//! The vault's promises: bytes round-trip through every erasure pattern parity covers, damage
//! is detected and never released, faults follow the degraded-write rule, repair restores full
//! redundancy, and no plaintext reaches any store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eurooffice_connector::library::bytes_stream;
use eurooffice_connector::storage::ObjectStore;
use eurooffice_connector::storage::objects::{collect_stream, once_stream};
use eurooffice_connector::vault::{
    DEFAULT_SEGMENT_BYTES, Manifest, ShardHealth, Vault, VaultSettings,
};
use eurooffice_connector::{Error, ids};
use futures::StreamExt;
use skye_integration_tests::faults::{Fault, FaultSwitch, wrap_all};
use skye_integration_tests::{TestEnv, on_both_backends, pseudo_random};

on_both_backends!(
    round_trips_at_stripe_boundaries,
    every_erasure_pattern_up_to_parity,
    tampering_is_detected_and_never_released,
    faults_follow_the_degraded_write_rule,
    scrub_and_repair_restore_redundancy,
    repair_covers_documents_and_their_changes,
    garbage_collection_keeps_referenced_shards,
    no_plaintext_reaches_any_store,
);

const SMALL_SEGMENT: u32 = 4096;

fn vault(env: &TestEnv, segment: u32) -> (Vault, Vec<FaultSwitch>) {
    let (providers, switches) = wrap_all(env.app.vault.providers());
    let settings = VaultSettings {
        segment_bytes: segment,
        provider_timeout: Duration::from_millis(1500),
        ..VaultSettings::default()
    };
    (
        Vault::new(env.app.vault.keys().clone(), providers, settings).unwrap(),
        switches,
    )
}

async fn read_all(vault: &Vault, manifest: &Manifest) -> eurooffice_connector::Result<Vec<u8>> {
    let mut stream = vault.get(&manifest.file_id, manifest).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Reads what a failing read released before it failed: it must be a prefix of the original.
async fn released_before_failure(vault: &Vault, manifest: &Manifest) -> (Vec<u8>, bool) {
    let Ok(mut stream) = vault.get(&manifest.file_id, manifest).await else {
        return (Vec::new(), true);
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

async fn put(vault: &Vault, data: &[u8]) -> Manifest {
    let file_id = ids::new_id();
    vault
        .put(
            &file_id,
            "group",
            bytes_stream(Bytes::copy_from_slice(data)),
            u64::MAX,
        )
        .await
        .unwrap()
}

fn provider_index(vault: &Vault, id: &str) -> usize {
    vault.providers().iter().position(|p| p.id() == id).unwrap()
}

async fn round_trips_at_stripe_boundaries(env: TestEnv) {
    let (v, _) = vault(&env, SMALL_SEGMENT);
    let seg = SMALL_SEGMENT as usize;
    let stripe = seg * 4;
    let sizes = [
        0,
        1,
        15,
        16,
        17,
        seg - 1,
        seg,
        seg + 1,
        stripe - 1,
        stripe,
        stripe + 1,
        3 * stripe,
        3 * stripe + seg,
        200_001,
    ];
    for (i, len) in sizes.into_iter().enumerate() {
        let data = pseudo_random(len, i as u64);
        let manifest = put(&v, &data).await;
        assert_eq!(manifest.plaintext_len, len as u64);
        assert!(
            read_all(&v, &manifest).await.unwrap() == data,
            "{len} bytes"
        );
        // What the providers really hold is n/k of the ciphertext, whatever the size: a short
        // stripe is split over the data shards, not padded to whole segments.
        let mut stored = 0;
        for shard in &manifest.shards {
            let p = &v.providers()[provider_index(&v, &shard.provider)];
            stored += p.head(&shard.key).await.unwrap().unwrap().size;
        }
        let ciphertext = manifest.ciphertext_len;
        assert!(
            stored <= ciphertext * 6 / 4 + 6 * 4 * 3,
            "{len} bytes stored as {stored} bytes of shards ({ciphertext} bytes of ciphertext)"
        );
    }
    // Full-size segments and a 64 MiB document (the property tests below use small segments).
    let (big, _) = vault(&env, DEFAULT_SEGMENT_BYTES);
    let sizes: &[usize] = if env.backend == skye_integration_tests::Backend::Embedded {
        &[4 << 20, (4 << 20) + 1, 64 << 20]
    } else {
        &[(4 << 20) + 1, 24 << 20]
    };
    for &len in sizes {
        let data = pseudo_random(len, len as u64);
        let manifest = put(&big, &data).await;
        assert!(
            read_all(&big, &manifest).await.unwrap() == data,
            "{len} bytes"
        );
        let json = serde_json::to_vec(&manifest).unwrap();
        assert!(
            json.len() < 40_000,
            "manifest of {len} bytes is {} bytes",
            json.len()
        );
    }
}

async fn every_erasure_pattern_up_to_parity(env: TestEnv) {
    let (v, switches) = vault(&env, SMALL_SEGMENT);
    let data = pseudo_random(5 * 4 * SMALL_SEGMENT as usize + 123, 9);
    let manifest = put(&v, &data).await;
    let n = 6;
    let mut patterns = 0;
    for mask in 0u32..(1 << n) {
        let down: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
        if down.len() > 3 {
            continue;
        }
        for shard in &down {
            switches[provider_index(&v, &manifest.shards[*shard].provider)].set(Fault::Fail);
        }
        let (released, failed) = released_before_failure(&v, &manifest).await;
        if down.len() <= 2 {
            assert!(
                !failed && released == data,
                "erasures {down:?} must be survivable"
            );
            patterns += 1;
        } else {
            assert!(failed, "erasures {down:?} exceed parity and must fail");
            assert!(
                data.starts_with(&released),
                "only verified bytes may be released"
            );
        }
        for s in &switches {
            s.set(Fault::None);
        }
    }
    assert_eq!(patterns, 1 + 6 + 15);
}

async fn rewrite(v: &Vault, manifest: &Manifest, shard: usize, change: impl FnOnce(&mut Vec<u8>)) {
    let s = &manifest.shards[shard];
    let p = &v.providers()[provider_index(v, &s.provider)];
    let mut bytes = collect_stream(p.get(&s.key, 0).await.unwrap(), u64::MAX)
        .await
        .unwrap()
        .to_vec();
    change(&mut bytes);
    p.put(&s.key, once_stream(Bytes::from(bytes)))
        .await
        .unwrap();
}

async fn tampering_is_detected_and_never_released(env: TestEnv) {
    let (v, _) = vault(&env, SMALL_SEGMENT);
    let data = pseudo_random(3 * 4 * SMALL_SEGMENT as usize + 77, 5);
    // A flipped byte anywhere in any one shard: detected by scrub, read still exact.
    for shard in 0..6 {
        let manifest = put(&v, &data).await;
        let at = (shard * 7919) % manifest.shards[shard].size as usize;
        rewrite(&v, &manifest, shard, |b| b[at] ^= 0x01).await;
        let report = v.scrub(&manifest).await.unwrap();
        assert!(
            matches!(report.shards[shard], ShardHealth::Corrupt(_)),
            "shard {shard}: {:?}",
            report.shards
        );
        assert_eq!(report.damaged(), 1);
        assert!(read_all(&v, &manifest).await.unwrap() == data);
    }
    // Truncated and extended shards.
    let manifest = put(&v, &data).await;
    rewrite(&v, &manifest, 1, |b| b.truncate(b.len() - 100)).await;
    rewrite(&v, &manifest, 4, |b| b.extend_from_slice(b"trailing")).await;
    let report = v.scrub(&manifest).await.unwrap();
    assert!(
        matches!(report.shards[1], ShardHealth::Corrupt(_))
            && matches!(report.shards[4], ShardHealth::Corrupt(_))
    );
    assert!(read_all(&v, &manifest).await.unwrap() == data);
    // Three corrupted shards at the first stripe: more than parity, nothing wrong released.
    let manifest = put(&v, &data).await;
    for shard in [0, 2, 5] {
        rewrite(&v, &manifest, shard, |b| b[3] ^= 0x80).await;
    }
    let (released, failed) = released_before_failure(&v, &manifest).await;
    assert!(
        failed && released.is_empty(),
        "no bytes from a stripe that cannot be verified"
    );
    // A shard swapped in from another version of the same file.
    let file_id = ids::new_id();
    let a = v
        .put(
            &file_id,
            "group",
            bytes_stream(Bytes::from(data.clone())),
            u64::MAX,
        )
        .await
        .unwrap();
    let other = pseudo_random(data.len(), 77);
    let b = v
        .put(
            &file_id,
            "group",
            bytes_stream(Bytes::from(other)),
            u64::MAX,
        )
        .await
        .unwrap();
    let b0 = &b.shards[0];
    let b_bytes = collect_stream(
        v.providers()[provider_index(&v, &b0.provider)]
            .get(&b0.key, 0)
            .await
            .unwrap(),
        u64::MAX,
    )
    .await
    .unwrap();
    rewrite(&v, &a, 0, |bytes| *bytes = b_bytes.to_vec()).await;
    assert!(
        matches!(
            v.scrub(&a).await.unwrap().shards[0],
            ShardHealth::Corrupt(_)
        ),
        "foreign shard detected"
    );
    assert!(read_all(&v, &a).await.unwrap() == data);
    // A manifest replayed with another version's data key: refused before any byte.
    let mut replayed = a.clone();
    replayed.wrapped_key = b.wrapped_key.clone();
    replayed.nonce_prefix = b.nonce_prefix.clone();
    let (released, failed) = released_before_failure(&v, &replayed).await;
    assert!(failed && released.is_empty());
    // A manifest pointed at another file is refused.
    assert!(matches!(
        v.get("another-file", &a).await,
        Err(Error::Integrity(_))
    ));
}

async fn faults_follow_the_degraded_write_rule(env: TestEnv) {
    let (v, switches) = vault(&env, SMALL_SEGMENT);
    let data = pseudo_random(6 * 4 * SMALL_SEGMENT as usize + 5, 3);
    // Reads: two providers down (one failing, one hanging) and one slow.
    let manifest = put(&v, &data).await;
    switches[provider_index(&v, &manifest.shards[0].provider)].set(Fault::Fail);
    switches[provider_index(&v, &manifest.shards[2].provider)].set(Fault::Hang);
    switches[provider_index(&v, &manifest.shards[3].provider)]
        .set(Fault::Slow(Duration::from_millis(5)));
    assert!(read_all(&v, &manifest).await.unwrap() == data);
    switches.iter().for_each(|s| s.set(Fault::None));

    // Writes: one provider down → stored degraded, the missing shard marked.
    switches[0].set(Fault::Fail);
    let degraded = put(&v, &data).await;
    assert_eq!(degraded.shards.iter().filter(|s| s.missing).count(), 1);
    assert!(read_all(&v, &degraded).await.unwrap() == data);
    // One provider hanging: the write finishes after the timeout, degraded.
    switches[0].set(Fault::None);
    switches[1].set(Fault::Hang);
    let hung = put(&v, &data).await;
    assert_eq!(hung.shards.iter().filter(|s| s.missing).count(), 1);
    switches[1].set(Fault::None);
    // Two down (below SKYE_MIN_WRITE_SHARDS = 5): the put fails and leaves nothing behind.
    let before: usize = count_shards(&v).await;
    switches[2].set(Fault::Fail);
    switches[4].set(Fault::Fail);
    let result = v
        .put(
            &ids::new_id(),
            "group",
            bytes_stream(Bytes::from(data.clone())),
            u64::MAX,
        )
        .await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "{:?}",
        result.map(|m| m.version_id)
    );
    switches.iter().for_each(|s| s.set(Fault::None));
    assert_eq!(
        count_shards(&v).await,
        before,
        "a failed put deletes what it wrote"
    );
}

/// `skye repair` goes through `library::repair_file`: a version's changes zip is a stored object
/// like its document, and gets its lost shards back the same way.
async fn repair_covers_documents_and_their_changes(env: TestEnv) {
    use eurooffice_connector::library::{self, NewVersion};
    use eurooffice_connector::model::Origin;
    let app = &env.app;
    let original = pseudo_random(300_000, 21);
    let file = library::import(app, "alice", "notes.docx", bytes_stream(original.into()))
        .await
        .unwrap();
    let edited = pseudo_random(500_000, 22);
    let changes = pseudo_random(90_000, 23);
    library::save_version(
        app,
        &file.file_id,
        NewVersion {
            author: "alice".into(),
            origin: Origin::Save,
            format: "docx".into(),
            bytes: Bytes::from(edited.clone()),
            changes: Some(Bytes::from(changes.clone())),
            history: None,
            save_id: "s1".into(),
        },
    )
    .await
    .unwrap();
    let v2 = app
        .catalog
        .version(&file.file_id, 2)
        .await
        .unwrap()
        .unwrap();
    let stored_changes = v2.changes.clone().unwrap();
    // One shard of the document and two of the changes zip are lost.
    for (manifest, shard) in [
        (&v2.manifest, 1),
        (&stored_changes, 0),
        (&stored_changes, 5),
    ] {
        let lost = &manifest.shards[shard];
        let p = &app.vault.providers()[provider_index(&app.vault, &lost.provider)];
        p.delete(&lost.key).await.unwrap();
    }
    assert_eq!(app.vault.scrub(&stored_changes).await.unwrap().damaged(), 2);

    let lines = library::repair_file(app, &file.file_id).await.unwrap();
    let repaired: Vec<(u32, &str)> = lines
        .iter()
        .filter(|l| matches!(l.outcome, Ok(true)))
        .map(|l| (l.number, l.object))
        .collect();
    assert_eq!(repaired, vec![(2, "document"), (2, "changes")]);
    let v2 = app
        .catalog
        .version(&file.file_id, 2)
        .await
        .unwrap()
        .unwrap();
    let changes_after = v2.changes.clone().unwrap();
    assert_eq!(app.vault.scrub(&v2.manifest).await.unwrap().damaged(), 0);
    assert_eq!(app.vault.scrub(&changes_after).await.unwrap().damaged(), 0);
    // Full redundancy again: the bytes come back with any two other shards gone.
    let mut degraded = changes_after.clone();
    degraded.shards[1].missing = true;
    degraded.shards[2].missing = true;
    assert!(read_all(&app.vault, &degraded).await.unwrap() == changes);
    assert!(read_all(&app.vault, &v2.manifest).await.unwrap() == edited);
    assert_eq!(v2.state, eurooffice_connector::model::VersionState::Current);
}

async fn count_shards(v: &Vault) -> usize {
    let mut n = 0;
    for p in v.providers() {
        n += p.list("shards/").await.unwrap().len();
    }
    n
}

async fn scrub_and_repair_restore_redundancy(env: TestEnv) {
    let (v, switches) = vault(&env, SMALL_SEGMENT);
    let data = pseudo_random(2 * 4 * SMALL_SEGMENT as usize + 999, 11);
    switches[0].set(Fault::Fail);
    let manifest = put(&v, &data).await;
    let missing = manifest.shards.iter().position(|s| s.missing).unwrap();
    // Another shard gets corrupted while the provider is down.
    let corrupt = (missing + 1) % 6;
    rewrite(&v, &manifest, corrupt, |b| b[10] ^= 0xff).await;
    let report = v.scrub(&manifest).await.unwrap();
    assert_eq!(report.damaged(), 2);
    // Repair while the provider is still down: the missing shard moves elsewhere.
    let repaired = v
        .repair(&manifest)
        .await
        .unwrap()
        .expect("something to repair");
    assert!(repaired.shards.iter().all(|s| !s.missing));
    assert_eq!(v.scrub(&repaired).await.unwrap().damaged(), 0);
    // Full redundancy: any two shards may now go (marked lost, so only those two are erased).
    switches[0].set(Fault::None);
    for pair in [(0, 1), (missing, corrupt), (4, 5), (missing, 2)] {
        let mut lost = repaired.clone();
        lost.shards[pair.0].missing = true;
        lost.shards[pair.1].missing = true;
        assert!(read_all(&v, &lost).await.unwrap() == data, "{pair:?}");
    }
    let per_provider = repaired
        .shards
        .iter()
        .fold(std::collections::HashMap::new(), |mut m, s| {
            *m.entry(s.provider.clone()).or_insert(0) += 1;
            m
        });
    assert!(
        per_provider.values().all(|&c| c <= 2),
        "no provider holds more shards than parity covers"
    );
    assert!(
        v.repair(&repaired).await.unwrap().is_none(),
        "nothing left to repair"
    );
}

async fn garbage_collection_keeps_referenced_shards(env: TestEnv) {
    let (v, _) = vault(&env, SMALL_SEGMENT);
    let kept = put(&v, &pseudo_random(50_000, 1)).await;
    let orphan = put(&v, &pseudo_random(50_000, 2)).await;
    let referenced = kept
        .shards
        .iter()
        .map(|s| (s.provider.clone(), s.key.clone()))
        .collect();
    // A young orphan may be a put in progress: kept with the margin.
    assert_eq!(
        v.gc(&referenced, Duration::from_secs(3600)).await.unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(v.gc(&referenced, Duration::from_secs(1)).await.unwrap(), 6);
    assert!(read_all(&v, &kept).await.is_ok());
    assert!(read_all(&v, &orphan).await.is_err());
}

fn distinct_enough(w: &[u8]) -> bool {
    // Runs of one or two byte values occur everywhere (padding, zero parity): not evidence.
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &b in w {
        if !seen[b as usize] {
            seen[b as usize] = true;
            distinct += 1;
        }
    }
    distinct > 4
}

async fn no_plaintext_reaches_any_store(env: TestEnv) {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    let mut docs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("corpus at {}: {e}", corpus.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x != "md"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    assert!(docs.len() >= 10, "corpus documents found");
    let marker = "SKYE-PLAINTEXT-MARKER-7f3a9c1e the quick brown fox\n".repeat(4000);
    docs.push(("marker.txt".into(), marker.into_bytes()));
    let mut windows = std::collections::HashSet::new();
    for (_, d) in &docs {
        for w in d.windows(16).filter(|w| distinct_enough(w)) {
            windows.insert(<[u8; 16]>::try_from(w).unwrap());
        }
    }
    let app = &env.app;
    for (name, bytes) in &docs {
        eurooffice_connector::library::import(
            app,
            "alice",
            name,
            bytes_stream(Bytes::from(bytes.clone())),
        )
        .await
        .unwrap();
    }
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for p in app
        .vault
        .providers()
        .iter()
        .chain(std::iter::once(&app.temp))
    {
        for object in p.list("").await.unwrap() {
            let b = collect_stream(p.get(&object.key, 0).await.unwrap(), u64::MAX)
                .await
                .unwrap();
            blobs.push((format!("{}:{}", p.id(), object.key), b.to_vec()));
        }
    }
    let catalog = serde_json::to_vec(&app.catalog.files().await.unwrap()).unwrap();
    blobs.push(("catalog files".into(), catalog));
    for f in app.catalog.files().await.unwrap() {
        blobs.push((
            format!("catalog versions {}", f.file_id),
            serde_json::to_vec(&app.catalog.versions(&f.file_id).await.unwrap()).unwrap(),
        ));
    }
    for entry in walk(env.dir.path()) {
        blobs.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    assert!(
        blobs.len() > 6 * docs.len(),
        "shards of every document were scanned"
    );
    for (name, blob) in &blobs {
        if let Some(w) = blob.windows(16).find(|w| windows.contains(*w)) {
            panic!(
                "plaintext window {:?} found in {name}",
                String::from_utf8_lossy(w)
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn vault_refuses_layouts_that_lose_more_than_parity() {
    // three providers for six shards is fine (two each); two providers would put three on one
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(
            eurooffice_connector::keys::LocalKeyProvider::open(&dir.path().join("k")).unwrap(),
        );
        let make = |n: usize| -> Vec<Arc<dyn ObjectStore>> {
            (0..n)
                .map(|i| {
                    Arc::new(
                        eurooffice_connector::storage::DirStore::open(
                            format!("p{i}"),
                            dir.path().join(format!("p{i}")),
                        )
                        .unwrap(),
                    ) as Arc<dyn ObjectStore>
                })
                .collect()
        };
        assert!(Vault::new(keys.clone(), make(3), VaultSettings::default()).is_ok());
        let err = Vault::new(keys, make(2), VaultSettings::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("SKYE_PROVIDERS"), "{err}");
    });
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::subsequence;

    fn embedded_vault(dir: &std::path::Path, segment: u32) -> Vault {
        let keys =
            Arc::new(eurooffice_connector::keys::LocalKeyProvider::open(&dir.join("k")).unwrap());
        let providers: Vec<Arc<dyn ObjectStore>> = (0..6)
            .map(|i| {
                Arc::new(eurooffice_connector::storage::MemStore::new(format!(
                    "m{i}"
                ))) as Arc<dyn ObjectStore>
            })
            .collect();
        Vault::new(
            keys,
            providers,
            VaultSettings {
                segment_bytes: segment,
                ..VaultSettings::default()
            },
        )
        .unwrap()
    }

    fn check(segment: u32, len: usize, lost: Vec<usize>) -> Result<(), TestCaseError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let v = embedded_vault(dir.path(), segment);
        let data = pseudo_random(len, len as u64 ^ 0xabcdef);
        rt.block_on(async {
            let mut manifest = put(&v, &data).await;
            for &i in &lost {
                manifest.shards[i].missing = true;
            }
            let (released, failed) = released_before_failure(&v, &manifest).await;
            if lost.len() <= 2 {
                prop_assert!(!failed, "{} bytes, lost {:?}", len, lost);
                prop_assert!(
                    released == data,
                    "{} bytes round-trip, lost {:?}",
                    len,
                    lost
                );
            } else {
                prop_assert!(failed, "{} bytes with {:?} lost must fail", len, lost);
                prop_assert!(data.starts_with(&released), "only verified bytes released");
            }
            Ok(())
        })
    }

    /// Sizes around segment (4 KiB), stripe (16 KiB) and shard boundaries, and anywhere else.
    fn small_sizes() -> impl Strategy<Value = usize> {
        let seg = SMALL_SEGMENT as usize;
        prop_oneof![
            0usize..400_000,
            (0usize..40, -2i64..=2).prop_map(move |(n, d)| ((n * seg) as i64 + d).max(0) as usize),
            (0usize..10, -1i64..=1)
                .prop_map(move |(n, d)| ((n * 4 * seg) as i64 + d).max(0) as usize),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn small_segments_round_trip_through_any_erasures(len in small_sizes(), lost in subsequence((0..6).collect::<Vec<_>>(), 0..=3)) {
            check(SMALL_SEGMENT, len, lost)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
        #[test]
        fn real_segments_round_trip_up_to_64_mib(
            len in prop_oneof![
                0usize..(64 << 20),
                // Whole stripes (k segments) and one byte either side.
                (1usize..=64, -1i64..=1).prop_map(|(n, d)| (n * 4 * DEFAULT_SEGMENT_BYTES as usize) as i64 + d).prop_map(|l| l as usize),
                Just(64 << 20),
            ],
            lost in subsequence((0..6).collect::<Vec<_>>(), 0..=2),
        ) {
            check(DEFAULT_SEGMENT_BYTES, len, lost)?;
        }
    }
}
