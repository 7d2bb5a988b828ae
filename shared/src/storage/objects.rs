//! The object seam: opaque, streamed objects in one place. Every shard provider and the temp
//! store is one of these; the directory implementation is the embedded default.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::{Error, Result};

/// A stream of bytes that may fail part-way.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Wraps a single buffer as a stream.
pub fn once_stream(bytes: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

/// Reads a whole stream into memory (for small objects only), refusing more than `limit` bytes.
pub async fn collect_stream(mut stream: ByteStream, limit: u64) -> Result<Bytes> {
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Error::TooLarge(format!("object larger than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// What a listing or head says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// One place that keeps opaque objects: a storage provider holding shards, or the temp store.
/// Keys are `[A-Za-z0-9._-]` segments joined by `/`.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stable identifier (the provider id) used in manifests and logs.
    fn id(&self) -> &str;
    /// Stores the stream under `key`, replacing any object there; returns the byte count.
    /// Nothing is visible under `key` unless the whole stream was stored.
    async fn put(&self, key: &str, body: ByteStream) -> Result<u64>;
    /// Streams the object from byte `offset`; `NotFound` when absent.
    async fn get(&self, key: &str, offset: u64) -> Result<ByteStream>;
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;
    /// Deleting an absent object succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
}

/// Refuses keys that could escape a directory or confuse an S3 listing.
pub fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!("invalid object key `{key}`")))
    }
}

/// Objects as files below a directory: the embedded provider and temp store.
#[derive(Debug, Clone)]
pub struct DirStore {
    id: String,
    root: PathBuf,
}

const READ_CHUNK: usize = 256 * 1024;
const TEMP_SUFFIX: &str = ".partial";

impl DirStore {
    /// Creates the directory (mode 0700 on Unix) if needed.
    pub fn open(id: impl Into<String>, root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        create_private_dir(&root)?;
        Ok(Self {
            id: id.into(),
            root,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::unavailable(format!("provider {}", self.id), e)
    }
}

pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for DirStore {
    fn id(&self) -> &str {
        &self.id
    }

    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| self.io(e))?;
        }
        let temp = path.with_file_name(format!(
            "{}.{}{TEMP_SUFFIX}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            crate::ids::random_hex(8)
        ));
        let result: Result<u64> = async {
            let mut file = tokio::fs::File::create(&temp)
                .await
                .map_err(|e| self.io(e))?;
            let mut written = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                file.write_all(&chunk).await.map_err(|e| self.io(e))?;
                written += chunk.len() as u64;
            }
            file.sync_all().await.map_err(|e| self.io(e))?;
            Ok(written)
        }
        .await;
        match result {
            Ok(written) => {
                tokio::fs::rename(&temp, &path)
                    .await
                    .map_err(|e| self.io(e))?;
                Ok(written)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Err(e)
            }
        }
    }

    async fn get(&self, key: &str, offset: u64) -> Result<ByteStream> {
        let path = self.path(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound("object"));
            }
            Err(e) => return Err(self.io(e)),
        };
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| self.io(e))?;
        }
        let id = self.id.clone();
        Ok(Box::pin(futures::stream::try_unfold(
            file,
            move |mut file| {
                let id = id.clone();
                async move {
                    let mut buf = BytesMut::zeroed(READ_CHUNK);
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|e| Error::unavailable(format!("provider {id}"), e))?;
                    if n == 0 {
                        return Ok(None);
                    }
                    buf.truncate(n);
                    Ok(Some((buf.freeze(), file)))
                }
            },
        )))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: m.len(),
                last_modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::unavailable(format!("provider {id}"), e)),
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let Ok(meta) = entry.metadata() else { continue };
                    if meta.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let Ok(rel) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let key = rel
                        .to_string_lossy()
                        .replace(std::path::MAIN_SEPARATOR, "/");
                    if key.ends_with(TEMP_SUFFIX) || !key.starts_with(&prefix) {
                        continue;
                    }
                    out.push(ObjectMeta {
                        key,
                        size: meta.len(),
                        last_modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(Error::internal)?
    }
}

/// Objects in memory: for benchmarks and tests that must not touch a disk.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    id: String,
    objects:
        std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, (Bytes, SystemTime)>>>,
}

impl MemStore {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            objects: Default::default(),
        }
    }

    fn objects(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, (Bytes, SystemTime)>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ObjectStore for MemStore {
    fn id(&self) -> &str {
        &self.id
    }

    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64> {
        check_key(key)?;
        let mut chunks = Vec::new();
        while let Some(chunk) = body.next().await {
            chunks.push(chunk?);
        }
        // One chunk (the common case for shards of small documents) is kept without a copy.
        let bytes = if chunks.len() == 1 {
            chunks.remove(0)
        } else {
            Bytes::from(chunks.concat())
        };
        let len = bytes.len() as u64;
        self.objects()
            .insert(key.to_string(), (bytes, SystemTime::now()));
        Ok(len)
    }

    async fn get(&self, key: &str, offset: u64) -> Result<ByteStream> {
        check_key(key)?;
        let bytes = self
            .objects()
            .get(key)
            .map(|(b, _)| b.clone())
            .ok_or(Error::NotFound("object"))?;
        let start = (offset as usize).min(bytes.len());
        let chunks: Vec<Result<Bytes>> = (start..bytes.len())
            .step_by(READ_CHUNK)
            .map(|i| Ok(bytes.slice(i..(i + READ_CHUNK).min(bytes.len()))))
            .collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        Ok(self.objects().get(key).map(|(b, t)| ObjectMeta {
            key: key.to_string(),
            size: b.len() as u64,
            last_modified: *t,
        }))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.objects().remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .objects()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (b, t))| ObjectMeta {
                key: k.clone(),
                size: b.len() as u64,
                last_modified: *t,
            })
            .collect())
    }
}
