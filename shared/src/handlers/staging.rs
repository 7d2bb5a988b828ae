//! Saves that could not be committed are kept, encrypted, in the temp store until a retried
//! callback (or the next save of the session) finishes them, exactly once.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::error::{Error, Result};
use crate::ids;
use crate::keys::KeyContext;
use crate::model::Origin;
use crate::storage::ByteStream;
use crate::vault::{NONCE_PREFIX_BYTES, SegmentCipher, TAG_BYTES};

const SEGMENT: usize = 1024 * 1024;

/// What is needed to finish a staged save later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedSave {
    pub file_id: String,
    pub session_id: String,
    pub save_id: String,
    pub origin: Origin,
    pub format: String,
    pub author: String,
    #[serde(default)]
    pub history: Option<serde_json::Value>,
    pub created: i64,
    object_id: String,
    wrapped_key: String,
    nonce_prefix: String,
    plaintext_len: u64,
}

fn prefix(session_id: &str) -> String {
    format!("staged/{session_id}/")
}

fn name(save_id: &str) -> String {
    blake3::hash(save_id.as_bytes()).to_hex()[..32].to_string()
}

fn context(session_id: &str) -> KeyContext {
    [
        ("purpose".to_string(), "staged-save".to_string()),
        ("session_id".to_string(), session_id.to_string()),
    ]
    .into()
}

pub struct StageRequest<'a> {
    pub file_id: &'a str,
    pub session_id: &'a str,
    pub save_id: &'a str,
    pub origin: Origin,
    pub format: &'a str,
    pub author: &'a str,
    pub history: Option<serde_json::Value>,
}

/// Seals `bytes` under a fresh data key and stores it with its description.
pub async fn stage(app: &App, req: StageRequest<'_>, bytes: Bytes) -> Result<()> {
    let key = app.vault.keys().generate(&context(req.session_id)).await?;
    let nonce_prefix = ids::random_bytes::<NONCE_PREFIX_BYTES>();
    let object_id = ids::new_id();
    let cipher = SegmentCipher::new(&key.plaintext, nonce_prefix, req.file_id, &object_id);
    let segments = bytes.len().div_ceil(SEGMENT).max(1);
    let sealed: ByteStream = Box::pin(futures::stream::iter(0..segments).map(move |i| {
        let chunk = &bytes[(i * SEGMENT).min(bytes.len())..((i + 1) * SEGMENT).min(bytes.len())];
        let mut buf = BytesMut::zeroed(chunk.len() + TAG_BYTES);
        buf[..chunk.len()].copy_from_slice(chunk);
        cipher.seal(i as u64, i + 1 == segments, &mut buf)?;
        Ok(buf.freeze())
    }));
    let base = format!("{}{}", prefix(req.session_id), name(req.save_id));
    let plaintext_len = app.temp.put(&format!("{base}.bin"), sealed).await?;
    let meta = StagedSave {
        file_id: req.file_id.to_string(),
        session_id: req.session_id.to_string(),
        save_id: req.save_id.to_string(),
        origin: req.origin,
        format: req.format.to_string(),
        author: req.author.to_string(),
        history: req.history,
        created: ids::now(),
        object_id,
        wrapped_key: ids::b64(&key.wrapped),
        nonce_prefix: ids::b64(&nonce_prefix),
        plaintext_len: plaintext_len - (segments * TAG_BYTES) as u64,
    };
    let json = Bytes::from(serde_json::to_vec(&meta)?);
    app.temp
        .put(
            &format!("{base}.json"),
            crate::storage::objects::once_stream(json),
        )
        .await?;
    Ok(())
}

/// Staged saves of a session, oldest first.
pub async fn pending(app: &App, session_id: &str) -> Result<Vec<StagedSave>> {
    let mut out = Vec::new();
    for object in app.temp.list(&prefix(session_id)).await? {
        if !object.key.ends_with(".json") {
            continue;
        }
        let stream = app.temp.get(&object.key, 0).await?;
        let bytes = crate::storage::objects::collect_stream(stream, 4 * 1024 * 1024).await?;
        match serde_json::from_slice::<StagedSave>(&bytes) {
            Ok(meta) => out.push(meta),
            Err(e) => {
                tracing::error!(key = %object.key, error = %e, "unreadable staged save description")
            }
        }
    }
    out.sort_by_key(|m| m.created);
    Ok(out)
}

/// The staged save with this id, if any.
pub async fn find(app: &App, session_id: &str, save_id: &str) -> Result<Option<StagedSave>> {
    Ok(pending(app, session_id)
        .await?
        .into_iter()
        .find(|m| m.save_id == save_id))
}

/// Decrypts a staged save's bytes.
pub async fn load(app: &App, meta: &StagedSave) -> Result<Bytes> {
    let wrapped =
        ids::unb64(&meta.wrapped_key).ok_or_else(|| Error::Integrity("staged key".into()))?;
    let prefix_bytes: [u8; NONCE_PREFIX_BYTES] = ids::unb64(&meta.nonce_prefix)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| Error::Integrity("staged nonce".into()))?;
    let key = app
        .vault
        .keys()
        .unwrap(&wrapped, &context(&meta.session_id))
        .await?;
    let cipher = SegmentCipher::new(&key, prefix_bytes, &meta.file_id, &meta.object_id);
    let base = format!("{}{}", prefix(&meta.session_id), name(&meta.save_id));
    let stream = app.temp.get(&format!("{base}.bin"), 0).await?;
    let limit = app.config.max_document_bytes
        + (app.config.max_document_bytes / SEGMENT as u64 + 1) * TAG_BYTES as u64;
    let sealed = crate::storage::objects::collect_stream(stream, limit).await?;
    let segments = (meta.plaintext_len as usize).div_ceil(SEGMENT).max(1);
    let mut out = BytesMut::with_capacity(meta.plaintext_len as usize);
    let mut offset = 0;
    for i in 0..segments {
        let len = SEGMENT.min(meta.plaintext_len as usize - i * SEGMENT) + TAG_BYTES;
        let mut buf = sealed
            .get(offset..offset + len)
            .ok_or_else(|| Error::Integrity("staged save is truncated".into()))?
            .to_vec();
        let n = cipher.open(i as u64, i + 1 == segments, &mut buf)?;
        out.extend_from_slice(&buf[..n]);
        offset += len;
    }
    if offset != sealed.len() {
        return Err(Error::Integrity("staged save has extra bytes".into()));
    }
    Ok(out.freeze())
}

pub async fn remove(app: &App, meta: &StagedSave) -> Result<()> {
    let base = format!("{}{}", prefix(&meta.session_id), name(&meta.save_id));
    app.temp.delete(&format!("{base}.json")).await?;
    app.temp.delete(&format!("{base}.bin")).await
}
