//! Operations on stored documents, shared by the handlers and the `skye` command:
//! import, read a version, save a new version exactly once, share.

use bytes::Bytes;
use futures::StreamExt;

use crate::app::App;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{Access, FileRecord, Origin, VersionRecord, VersionState, extension_of};
use crate::storage::{ByteStream, CommitOutcome, VersionCommit};
use crate::vault::Manifest;

/// Stores a new document as version 1.
pub async fn import(app: &App, owner: &str, title: &str, body: ByteStream) -> Result<FileRecord> {
    validate_title(title)?;
    let file_id = ids::new_id();
    let group_id = ids::new_id();
    // The plaintext digest (save dedupe, exports) is taken as the bytes stream past.
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(blake3::Hasher::new()));
    let tap = hasher.clone();
    let body: ByteStream = Box::pin(body.inspect(move |chunk| {
        if let (Ok(bytes), Ok(mut h)) = (chunk, tap.lock()) {
            h.update(bytes);
        }
    }));
    let manifest = app
        .vault
        .put(&file_id, &group_id, body, app.config.max_document_bytes)
        .await?;
    let digest = hasher
        .lock()
        .map_err(|_| Error::internal("digest lock poisoned"))?
        .finalize()
        .to_hex()
        .to_string();
    let now = ids::now();
    let file = FileRecord {
        file_id: file_id.clone(),
        title: title.to_string(),
        owner: owner.to_string(),
        acl: Default::default(),
        head: 1,
        version_group_id: group_id,
        created: now,
        updated: now,
    };
    let version = VersionRecord {
        file_id,
        number: 1,
        state: VersionState::Current,
        size: manifest.plaintext_len,
        format: extension_of(title),
        created: now,
        author: owner.to_string(),
        origin: Origin::Import,
        manifest: manifest.clone(),
        changes: None,
        history: None,
        digest,
    };
    if let Err(e) = app.catalog.create_file(&file, &version).await {
        app.vault.delete(&manifest).await;
        return Err(e);
    }
    Ok(file)
}

pub fn validate_title(title: &str) -> Result<()> {
    if title.is_empty() || title.len() > 255 || title.contains(['/', '\\', '\0']) {
        return Err(Error::BadRequest(
            "file name must be 1-255 characters without slashes".into(),
        ));
    }
    Ok(())
}

/// A version (the current one when `number` is `None`) and its verified plaintext stream.
pub async fn open_version(
    app: &App,
    file_id: &str,
    number: Option<u32>,
) -> Result<(VersionRecord, ByteStream)> {
    let file = app
        .catalog
        .file(file_id)
        .await?
        .ok_or(Error::NotFound("file"))?;
    let number = number.unwrap_or(file.head);
    let version = app
        .catalog
        .version(file_id, number)
        .await?
        .ok_or(Error::NotFound("version"))?;
    let stream = app.vault.get(file_id, &version.manifest).await?;
    Ok((version, stream))
}

/// A new version to save.
pub struct NewVersion {
    pub author: String,
    pub origin: Origin,
    /// Extension of the saved bytes (`filetype` of the callback).
    pub format: String,
    pub bytes: Bytes,
    /// The editor's changes zip, kept for history.
    pub changes: Option<Bytes>,
    pub history: Option<serde_json::Value>,
    /// What identifies this save apart from its content (session, lastsave, status).
    pub save_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub number: u32,
    /// The same save was committed before: nothing new was created.
    pub duplicate: bool,
}

/// The marker that makes a save idempotent: its identity plus its content.
pub fn save_marker(save_id: &str, digest: &str) -> String {
    blake3::hash(format!("{save_id}\n{digest}").as_bytes()).to_hex()[..40].to_string()
}

/// Stores `new` and makes it the current version, archiving the previous one. A save that was
/// committed before creates nothing; a save racing another one becomes the next version.
/// On failure nothing is committed and every shard written is removed.
pub async fn save_version(app: &App, file_id: &str, new: NewVersion) -> Result<Saved> {
    let digest = blake3::hash(&new.bytes).to_hex().to_string();
    let marker = save_marker(&new.save_id, &digest);
    if let Some(number) = app.catalog.marker(file_id, &marker).await? {
        return Ok(Saved {
            number,
            duplicate: true,
        });
    }
    let file = app
        .catalog
        .file(file_id)
        .await?
        .ok_or(Error::NotFound("file"))?;
    let limit = app.config.max_document_bytes;
    let manifest = app
        .vault
        .put(
            file_id,
            &file.version_group_id,
            bytes_stream(new.bytes.clone()),
            limit,
        )
        .await?;
    let changes = match new.changes.clone() {
        Some(zip) => match app
            .vault
            .put(file_id, &file.version_group_id, bytes_stream(zip), limit)
            .await
        {
            Ok(changes) => Some(changes),
            Err(e) => {
                app.vault.delete(&manifest).await;
                return Err(e);
            }
        },
        None => None,
    };
    let written: Vec<Manifest> = std::iter::once(manifest.clone())
        .chain(changes.clone())
        .collect();
    let result = commit(app, file_id, &new, manifest, digest, changes, marker).await;
    match &result {
        Ok(saved) if !saved.duplicate => {}
        _ => {
            for manifest in &written {
                app.vault.delete(manifest).await;
            }
        }
    }
    result
}

async fn commit(
    app: &App,
    file_id: &str,
    new: &NewVersion,
    manifest: Manifest,
    digest: String,
    changes: Option<Manifest>,
    marker: String,
) -> Result<Saved> {
    for _ in 0..16 {
        let file = app
            .catalog
            .file(file_id)
            .await?
            .ok_or(Error::NotFound("file"))?;
        let format = new.format.to_ascii_lowercase();
        let title = (format != file.extension() && !format.is_empty())
            .then(|| retitle(&file.title, &format));
        let version = VersionRecord {
            file_id: file_id.to_string(),
            number: file.head + 1,
            state: VersionState::Current,
            size: manifest.plaintext_len,
            format,
            created: ids::now(),
            author: new.author.clone(),
            origin: new.origin,
            manifest: manifest.clone(),
            changes: changes.clone(),
            history: new.history.clone(),
            digest: digest.clone(),
        };
        let commit = VersionCommit {
            expected_head: file.head,
            version,
            title,
            marker: marker.clone(),
        };
        match app.catalog.commit_version(file_id, &commit).await? {
            CommitOutcome::Committed => {
                return Ok(Saved {
                    number: file.head + 1,
                    duplicate: false,
                });
            }
            CommitOutcome::Duplicate(number) => {
                return Ok(Saved {
                    number,
                    duplicate: true,
                });
            }
            CommitOutcome::HeadMoved => continue,
        }
    }
    Err(Error::Conflict("too many concurrent saves".into()))
}

/// `report.doc` saved back as docx becomes `report.docx`.
pub fn retitle(title: &str, format: &str) -> String {
    match title.rsplit_once('.') {
        Some((stem, _)) => format!("{stem}.{format}"),
        None => format!("{title}.{format}"),
    }
}

pub fn bytes_stream(bytes: Bytes) -> ByteStream {
    // Hand the vault segment-sized slices: zero-copy views of one buffer.
    const CHUNK: usize = 1024 * 1024;
    let chunks: Vec<Result<Bytes>> = (0..bytes.len().div_ceil(CHUNK))
        .map(|i| Ok(bytes.slice(i * CHUNK..((i + 1) * CHUNK).min(bytes.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Grants or revokes access to a file for a user.
pub async fn share(app: &App, file_id: &str, user: &str, access: Option<Access>) -> Result<()> {
    let file = app
        .catalog
        .file(file_id)
        .await?
        .ok_or(Error::NotFound("file"))?;
    if file.owner == user {
        return Err(Error::BadRequest("the owner always has access".into()));
    }
    app.catalog.set_access(file_id, user, access).await
}

/// What repair did to one stored object of a version.
#[derive(Debug)]
pub struct Repaired {
    pub number: u32,
    /// `document` or `changes`.
    pub object: &'static str,
    /// `Ok(true)`: shards were rebuilt; `Ok(false)`: nothing needed it.
    pub outcome: Result<bool>,
}

/// Rebuilds the damaged shards of every version of a file, documents and changes zips alike,
/// and records the new manifests. A catalog failure stops it; a version beyond repair does not.
pub async fn repair_file(app: &App, file_id: &str) -> Result<Vec<Repaired>> {
    let mut out = Vec::new();
    for version in app.catalog.versions(file_id).await? {
        let objects = std::iter::once(("document", &version.manifest))
            .chain(version.changes.as_ref().map(|c| ("changes", c)));
        for (object, manifest) in objects {
            let outcome = match app.vault.repair(manifest).await {
                Ok(Some(repaired)) => {
                    app.catalog
                        .replace_manifest(file_id, version.number, &repaired)
                        .await?;
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            out.push(Repaired {
                number: version.number,
                object,
                outcome,
            });
        }
    }
    Ok(out)
}

/// Every manifest the catalog references (versions and their changes), for garbage collection.
pub async fn referenced_shards(app: &App) -> Result<std::collections::HashSet<(String, String)>> {
    let mut out = std::collections::HashSet::new();
    for file in app.catalog.files().await? {
        for version in app.catalog.versions(&file.file_id).await? {
            for manifest in std::iter::once(&version.manifest).chain(version.changes.as_ref()) {
                for shard in &manifest.shards {
                    out.insert((shard.provider.clone(), shard.key.clone()));
                }
            }
        }
    }
    Ok(out)
}
