//! One suite per seam, run against the embedded and the AWS (emulated) implementation alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eurooffice_connector::keys::KeyContext;
use eurooffice_connector::model::{
    Access, FileRecord, Origin, Session, SessionState, VersionRecord, VersionState,
};
use eurooffice_connector::storage::objects::{collect_stream, once_stream};
use eurooffice_connector::storage::{ByteStream, CommitOutcome, ObjectStore, VersionCommit};
use eurooffice_connector::{Error, ids};
use skye_integration_tests::{TestEnv, on_both_backends, pseudo_random};

on_both_backends!(
    shard_providers_conform,
    temp_store_conforms,
    key_provider_conforms,
    catalog_conforms,
    catalog_commits_exactly_once_under_races,
    session_store_conforms,
    concurrent_opens_share_one_session,
);

fn chunks(bytes: &[u8], size: usize) -> ByteStream {
    let parts: Vec<eurooffice_connector::Result<Bytes>> = bytes
        .chunks(size.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(parts))
}

async fn object_store_suite(store: &dyn ObjectStore) {
    let prefix = format!("suite-{}/", ids::random_hex(4));
    // empty, small, and larger than one multipart part, in odd chunk sizes
    for (i, len) in [0usize, 1, 1000, 6 * 1024 * 1024 + 17]
        .into_iter()
        .enumerate()
    {
        let data = pseudo_random(len, i as u64);
        let key = format!("{prefix}obj-{i}");
        assert_eq!(
            store.put(&key, chunks(&data, 777_777)).await.unwrap(),
            len as u64
        );
        let back = collect_stream(store.get(&key, 0).await.unwrap(), u64::MAX)
            .await
            .unwrap();
        assert_eq!(back.len(), len);
        assert!(back == data, "round trip of {len} bytes");
        let meta = store.head(&key).await.unwrap().expect("head");
        assert_eq!(meta.size, len as u64);
        if len > 10 {
            let tail = collect_stream(store.get(&key, 10).await.unwrap(), u64::MAX)
                .await
                .unwrap();
            assert!(tail == data[10..], "ranged read from 10");
        }
    }
    // overwrite replaces
    let key = format!("{prefix}obj-1");
    store
        .put(&key, once_stream(Bytes::from_static(b"replaced")))
        .await
        .unwrap();
    assert_eq!(
        &collect_stream(store.get(&key, 0).await.unwrap(), 100)
            .await
            .unwrap()[..],
        b"replaced"
    );
    // list by prefix
    let listed = store.list(&prefix).await.unwrap();
    let mut keys: Vec<_> = listed.iter().map(|m| m.key.clone()).collect();
    keys.sort();
    assert_eq!(
        keys,
        (0..4)
            .map(|i| format!("{prefix}obj-{i}"))
            .collect::<Vec<_>>()
    );
    // a failed upload leaves nothing behind
    let failing: ByteStream = Box::pin(futures::stream::iter(vec![
        Ok(Bytes::from(vec![1u8; 1000])),
        Err(Error::unavailable("test", "stream broke")),
    ]));
    let broken = format!("{prefix}broken");
    assert!(store.put(&broken, failing).await.is_err());
    assert!(
        store.head(&broken).await.unwrap().is_none(),
        "no partial object"
    );
    // missing objects
    assert!(matches!(
        store.get(&format!("{prefix}nothing"), 0).await,
        Err(Error::NotFound(_))
    ));
    assert!(
        store
            .head(&format!("{prefix}nothing"))
            .await
            .unwrap()
            .is_none()
    );
    // delete, twice
    for m in &listed {
        store.delete(&m.key).await.unwrap();
        store.delete(&m.key).await.unwrap();
    }
    assert!(store.list(&prefix).await.unwrap().is_empty());
    // keys that could escape are refused
    for bad in ["../x", "a//b", "/abs", "a/../b", "spaces are bad", ""] {
        assert!(
            store.put(bad, once_stream(Bytes::new())).await.is_err(),
            "{bad:?}"
        );
    }
}

async fn shard_providers_conform(env: TestEnv) {
    let providers = env.app.vault.providers();
    assert!(providers.len() >= 6, "six providers by default");
    object_store_suite(providers[0].as_ref()).await;
    eprintln!(
        "object store suite passed on {:?} provider {}",
        env.backend,
        providers[0].id()
    );
}

async fn temp_store_conforms(env: TestEnv) {
    object_store_suite(env.app.temp.as_ref()).await;
}

async fn key_provider_conforms(env: TestEnv) {
    let keys = env.app.vault.keys().clone();
    let context: KeyContext = BTreeMap::from([
        ("file_id".into(), "f1".into()),
        ("version_group_id".into(), "g1".into()),
    ]);
    let a = keys.generate(&context).await.unwrap();
    let b = keys.generate(&context).await.unwrap();
    assert_ne!(a.plaintext, b.plaintext, "fresh key each time");
    assert!(
        !a.wrapped.windows(32).any(|w| w == a.plaintext),
        "wrapped form does not contain the key"
    );
    assert_eq!(
        keys.unwrap(&a.wrapped, &context).await.unwrap(),
        a.plaintext
    );
    let mut other = context.clone();
    other.insert("file_id".into(), "f2".into());
    assert!(
        keys.unwrap(&a.wrapped, &other).await.is_err(),
        "context binds the key"
    );
    let mut tampered = a.wrapped.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(
        keys.unwrap(&tampered, &context).await.is_err(),
        "tampered wrap refused"
    );
}

fn manifest_stub(file_id: &str) -> eurooffice_connector::vault::Manifest {
    eurooffice_connector::vault::Manifest {
        format: 1,
        cipher: "AES-256-GCM".into(),
        erasure: "reed-solomon-gf8".into(),
        digest: "blake3".into(),
        file_id: file_id.into(),
        version_id: ids::new_id(),
        group_id: "g".into(),
        data_shards: 4,
        parity_shards: 2,
        segment_size: 1 << 20,
        plaintext_len: 0,
        ciphertext_len: 16,
        wrapped_key: String::new(),
        nonce_prefix: String::new(),
        shards: vec![],
    }
}

fn version(file_id: &str, number: u32) -> VersionRecord {
    VersionRecord {
        file_id: file_id.into(),
        number,
        state: VersionState::Current,
        size: number as u64,
        format: "docx".into(),
        created: ids::now(),
        author: "alice".into(),
        origin: if number == 1 {
            Origin::Import
        } else {
            Origin::Save
        },
        manifest: manifest_stub(file_id),
        changes: None,
        history: None,
        digest: format!("d{number}"),
    }
}

fn file(file_id: &str) -> FileRecord {
    FileRecord {
        file_id: file_id.into(),
        title: "report.doc".into(),
        owner: "alice".into(),
        acl: Default::default(),
        head: 1,
        version_group_id: "g".into(),
        created: ids::now(),
        updated: ids::now(),
    }
}

async fn catalog_conforms(env: TestEnv) {
    let catalog = env.app.catalog.clone();
    let id = ids::new_id();
    catalog
        .create_file(&file(&id), &version(&id, 1))
        .await
        .unwrap();
    assert!(matches!(
        catalog.create_file(&file(&id), &version(&id, 1)).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(catalog.file(&id).await.unwrap().unwrap().head, 1);
    assert!(
        catalog
            .files()
            .await
            .unwrap()
            .iter()
            .any(|f| f.file_id == id)
    );

    let commit = VersionCommit {
        expected_head: 1,
        version: VersionRecord {
            changes: Some(manifest_stub(&id)),
            ..version(&id, 2)
        },
        title: Some("report.docx".into()),
        marker: "m2".into(),
    };
    assert_eq!(
        catalog.commit_version(&id, &commit).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        catalog.commit_version(&id, &commit).await.unwrap(),
        CommitOutcome::Duplicate(2),
        "same marker again"
    );
    let stale = VersionCommit {
        expected_head: 1,
        version: version(&id, 2),
        title: None,
        marker: "other".into(),
    };
    assert_eq!(
        catalog.commit_version(&id, &stale).await.unwrap(),
        CommitOutcome::HeadMoved
    );
    assert_eq!(catalog.marker(&id, "m2").await.unwrap(), Some(2));
    assert_eq!(catalog.marker(&id, "never").await.unwrap(), None);

    let f = catalog.file(&id).await.unwrap().unwrap();
    assert_eq!((f.head, f.title.as_str()), (2, "report.docx"));
    let versions = catalog.versions(&id).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.number, v.state))
            .collect::<Vec<_>>(),
        vec![(1, VersionState::Archived), (2, VersionState::Current)]
    );

    let mut replaced = versions[0].manifest.clone();
    replaced.shards = vec![];
    replaced.ciphertext_len = 99;
    catalog.replace_manifest(&id, 1, &replaced).await.unwrap();
    assert_eq!(
        catalog
            .version(&id, 1)
            .await
            .unwrap()
            .unwrap()
            .manifest
            .ciphertext_len,
        99
    );
    let foreign = manifest_stub(&id);
    assert!(
        catalog.replace_manifest(&id, 1, &foreign).await.is_err(),
        "manifest of another version refused"
    );
    assert_eq!(
        catalog.version(&id, 1).await.unwrap().unwrap().state,
        VersionState::Archived,
        "repair leaves the version's state alone"
    );
    // The changes zip of a version is repaired through the same call.
    let v2 = catalog.version(&id, 2).await.unwrap().unwrap();
    let mut changes = v2.changes.clone().unwrap();
    changes.ciphertext_len = 77;
    catalog.replace_manifest(&id, 2, &changes).await.unwrap();
    let v2_after = catalog.version(&id, 2).await.unwrap().unwrap();
    assert_eq!(v2_after.changes.unwrap().ciphertext_len, 77);
    assert_eq!(
        v2_after.manifest, v2.manifest,
        "document manifest untouched"
    );
    assert_eq!(v2_after.state, VersionState::Current);

    catalog
        .set_access(&id, "bob", Some(Access::View))
        .await
        .unwrap();
    catalog
        .set_access(&id, "carol", Some(Access::Edit))
        .await
        .unwrap();
    catalog.set_access(&id, "carol", None).await.unwrap();
    let f = catalog.file(&id).await.unwrap().unwrap();
    assert_eq!(f.access_for("bob"), Some(Access::View));
    assert_eq!(f.access_for("carol"), None);
    assert_eq!(f.access_for("alice"), Some(Access::Edit));
    assert_eq!(f.head, 2, "sharing leaves versions alone");
    assert!(catalog.file("missing").await.unwrap().is_none());
    catalog.ping().await.unwrap();
}

async fn catalog_commits_exactly_once_under_races(env: TestEnv) {
    let catalog = env.app.catalog.clone();
    let id = ids::new_id();
    catalog
        .create_file(&file(&id), &version(&id, 1))
        .await
        .unwrap();
    // Eight writers race for version 2; exactly one wins, the rest see the head move.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let catalog = catalog.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let commit = VersionCommit {
                    expected_head: 1,
                    version: version(&id, 2),
                    title: None,
                    marker: format!("race-{i}"),
                };
                catalog.commit_version(&id, &commit).await.unwrap()
            })
        })
        .collect();
    let outcomes = futures::future::join_all(tasks).await;
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(CommitOutcome::Committed)))
        .count();
    assert_eq!(won, 1, "{outcomes:?}");
    assert_eq!(catalog.versions(&id).await.unwrap().len(), 2);
}

fn session(file_id: &str) -> Session {
    let now = ids::now();
    let sid = ids::new_id();
    Session {
        session_id: sid.clone(),
        file_id: file_id.into(),
        version: 1,
        key: ids::new_id(),
        document_url: format!("http://x/api/eurooffice/file/{sid}"),
        format: "docx".into(),
        participants: [("alice".to_string(), "Alice".to_string())].into(),
        connected: vec![],
        state: SessionState::Open,
        created: now,
        updated: now,
        expires_at: now + 3600,
        last_error: None,
    }
}

async fn session_store_conforms(env: TestEnv) {
    let store = env.app.sessions.clone();
    let file_id = ids::new_id();
    let first = store.open_or_join(session(&file_id)).await.unwrap();
    let joined = store.open_or_join(session(&file_id)).await.unwrap();
    assert_eq!(joined.session_id, first.session_id, "second opener joins");
    assert_eq!(joined.key, first.key);
    let mut updated = joined.clone();
    updated.participants.insert("bob".into(), "Bob".into());
    store.update(&updated).await.unwrap();
    assert_eq!(
        store
            .get(&first.session_id)
            .await
            .unwrap()
            .unwrap()
            .participants
            .len(),
        2
    );

    store.close(&updated).await.unwrap();
    let closed = store
        .get(&first.session_id)
        .await
        .unwrap()
        .expect("closed sessions stay readable");
    assert_eq!(closed.state, SessionState::Closed);
    let next = store.open_or_join(session(&file_id)).await.unwrap();
    assert_ne!(
        next.session_id, first.session_id,
        "a closed session is not joined"
    );
    assert_ne!(next.key, first.key);

    // An expired session is gone, even where the backend has not deleted it yet.
    let mut expired = session(&ids::new_id());
    expired.expires_at = ids::now() - 1;
    let stored = store.open_or_join(expired.clone()).await.unwrap();
    assert_eq!(stored.session_id, expired.session_id);
    assert!(store.get(&expired.session_id).await.unwrap().is_none());
    let fresh = store.open_or_join(session(&expired.file_id)).await.unwrap();
    assert_ne!(
        fresh.session_id, expired.session_id,
        "expired session is not joined"
    );
    assert!(matches!(
        store.update(&session("nobody")).await,
        Err(Error::NotFound(_))
    ));
    store.ping().await.unwrap();
}

async fn concurrent_opens_share_one_session(env: TestEnv) {
    let store = env.app.sessions.clone();
    let file_id = ids::new_id();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store: Arc<dyn eurooffice_connector::storage::SessionStore> = store.clone();
            let s = session(&file_id);
            tokio::spawn(async move { store.open_or_join(s).await.unwrap().session_id })
        })
        .collect();
    let ids: std::collections::HashSet<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "every concurrent opener got the same session");
}

/// `NAME_SECRET_ARN` and `NAME_PARAMETER` are fetched at start-up (values set by
/// localstack/create-resources.py on the emulator).
#[tokio::test]
async fn secret_references_resolve_from_secrets_manager_and_ssm() {
    if !skye_integration_tests::emulators_expected() {
        eprintln!(
            "emulator backend not requested (SKYE_TEST_EMULATORS unset): run the README test command"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut vars = skye_integration_tests::settings(
        skye_integration_tests::Backend::Emulator,
        &dir,
        "secrets",
        &[],
    );
    vars.remove("EUROOFFICE_JWT_SECRET");
    vars.remove("SKYE_USER_JWT_SECRET");
    vars.insert(
        "EUROOFFICE_JWT_SECRET_SECRET_ARN".into(),
        std::env::var("SKYE_TEST_SECRET_ARN").expect("SKYE_TEST_SECRET_ARN"),
    );
    vars.insert(
        "SKYE_USER_JWT_SECRET_PARAMETER".into(),
        std::env::var("SKYE_TEST_SECRET_PARAMETER").expect("SKYE_TEST_SECRET_PARAMETER"),
    );
    let app = eurooffice_connector::App::from_config(
        eurooffice_connector::Config::from_vars(&vars).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        app.docserver_secret,
        "secret-from-secrets-manager-0123456789abcdef"
    );
    let token = eurooffice_connector::protocol::jwt::sign_raw(
        "secret-from-ssm-parameter-0123456789abcdef",
        &serde_json::json!({"sub": "alice", "exp": ids::now() + 60}),
    )
    .unwrap();
    assert_eq!(app.users.verify(&token).await.unwrap().id, "alice");
    // A reference to a secret that does not exist stops start-up with the variable's name.
    vars.insert(
        "EUROOFFICE_JWT_SECRET_SECRET_ARN".into(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf".into(),
    );
    let err = eurooffice_connector::App::from_config(
        eurooffice_connector::Config::from_vars(&vars).unwrap(),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("EUROOFFICE_JWT_SECRET"), "{err}");
}
