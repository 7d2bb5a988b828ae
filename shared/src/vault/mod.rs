//! The zero-knowledge vault: a plaintext stream becomes encrypted, erasure-coded shards spread
//! over several providers, and comes back only after every byte is verified and authenticated.
//!
//! Layout: the plaintext is cut into segments (1 MiB by default), each sealed with AES-256-GCM.
//! `k` consecutive sealed segments form a stripe; each is one data piece (zero-padded to the
//! stripe's piece length) and Reed-Solomon adds `m` parity pieces. Shard `i` is the
//! concatenation of piece `i` of every stripe. Every piece has a BLAKE3 digest in the manifest,
//! so a reader finds a bad shard at the stripe where it goes bad, without buffering the shard.

mod crypto;
mod manifest;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reed_solomon_erasure::galois_8::ReedSolomon;
use tokio::sync::mpsc;

pub use crypto::{NONCE_PREFIX_BYTES, SegmentCipher, TAG_BYTES};
pub use manifest::{DIGEST_BYTES, Geometry, MANIFEST_FORMAT, Manifest, ShardRef};

use crate::error::{Error, Result};
use crate::ids;
use crate::keys::{KeyContext, KeyProvider};
use crate::storage::{ByteStream, ObjectStore};

/// 256 KiB: a stripe's six pieces (1.5 MiB) stay in cache between sealing, encoding and hashing,
/// and the allocator reuses them; 1 MiB segments put 6 MiB per stripe and measured 30% slower
/// for a 16 MiB document. The manifest grows by 32 bytes per shard per stripe (24 KB for
/// 100 MiB in 4+2).
pub const DEFAULT_SEGMENT_BYTES: u32 = 256 * 1024;
/// Random bytes in a shard's object key.
const OBJECT_KEY_BYTES: usize = 16;
/// Shard object keys live below this prefix; garbage collection looks nowhere else.
pub const SHARD_PREFIX: &str = "shards/";

/// Tunables of the vault.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Fewest shards a put may store and still succeed (degraded write).
    pub min_write_shards: usize,
    pub segment_bytes: u32,
    /// Longest wait for one provider step (opening a read, one chunk, accepting one piece).
    pub provider_timeout: Duration,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            data_shards: 4,
            parity_shards: 2,
            min_write_shards: 5,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            provider_timeout: Duration::from_secs(30),
        }
    }
}

/// Health of one shard after a scrub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardHealth {
    Ok,
    Missing,
    /// Present but wrong: size, or a piece digest at the given stripe.
    Corrupt(String),
}

#[derive(Debug, Clone)]
pub struct ScrubReport {
    pub shards: Vec<ShardHealth>,
}

impl ScrubReport {
    pub fn damaged(&self) -> usize {
        self.shards
            .iter()
            .filter(|h| **h != ShardHealth::Ok)
            .count()
    }
}

#[derive(Clone)]
pub struct Vault {
    keys: Arc<dyn KeyProvider>,
    providers: Vec<Arc<dyn ObjectStore>>,
    settings: VaultSettings,
    rs: Arc<ReedSolomon>,
    /// Stripe buffers kept between puts (ciphertext only): a save of a small document would
    /// otherwise spend as long faulting in fresh pages as it spends sealing.
    spare_buffers: Arc<std::sync::Mutex<Vec<BytesMut>>>,
}

fn key_context(file_id: &str, group_id: &str) -> KeyContext {
    BTreeMap::from([
        ("file_id".to_string(), file_id.to_string()),
        ("version_group_id".to_string(), group_id.to_string()),
    ])
}

/// Digest of one piece, bound to the object, shard and stripe it belongs to. The binding
/// follows the piece (it parses from the end), so the piece starts BLAKE3's chunk tree and is
/// hashed at full SIMD width from its first byte.
fn piece_digest(version_id: &str, shard: usize, stripe: u64, piece: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut h = piece_hasher();
    h.update(piece);
    finish_piece_digest(h, version_id, shard, stripe)
}

/// A hasher for a piece fed in parts; [`finish_piece_digest`] completes it.
fn piece_hasher() -> blake3::Hasher {
    blake3::Hasher::new_derive_key("skye-connector shard piece v2")
}

fn finish_piece_digest(
    mut h: blake3::Hasher,
    version_id: &str,
    shard: usize,
    stripe: u64,
) -> [u8; DIGEST_BYTES] {
    h.update(version_id.as_bytes());
    h.update(&(version_id.len() as u32).to_le_bytes());
    h.update(&(shard as u32).to_le_bytes());
    h.update(&stripe.to_le_bytes());
    *h.finalize().as_bytes()
}

/// Reads exact-size pieces from a shard stream.
struct ShardReader {
    stream: ByteStream,
    buf: BytesMut,
    timeout: Duration,
}

impl ShardReader {
    async fn read_exact(&mut self, n: usize) -> Result<BytesMut> {
        // One allocation of the piece's size, not a doubling series of copies.
        self.buf.reserve(n.saturating_sub(self.buf.len()));
        while self.buf.len() < n {
            let next = tokio::time::timeout(self.timeout, self.stream.next())
                .await
                .map_err(|_| Error::unavailable("provider", "read timed out"))?;
            match next {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => return Err(Error::Integrity("shard is truncated".into())),
            }
        }
        Ok(self.buf.split_to(n))
    }

    /// True when the shard holds bytes past its expected end.
    async fn has_trailing_bytes(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        matches!(tokio::time::timeout(self.timeout, self.stream.next()).await, Ok(Some(Ok(c))) if !c.is_empty())
    }
}

impl Vault {
    pub fn new(
        keys: Arc<dyn KeyProvider>,
        providers: Vec<Arc<dyn ObjectStore>>,
        settings: VaultSettings,
    ) -> Result<Self> {
        let n = settings.data_shards + settings.parity_shards;
        if providers.is_empty() {
            return Err(Error::Config(
                "at least one storage provider is needed".into(),
            ));
        }
        // With fewer providers than shards, one provider holds several: losing it must not
        // lose more shards than parity covers.
        let per_provider = n.div_ceil(providers.len());
        if per_provider > settings.parity_shards {
            return Err(Error::Config(format!(
                "SKYE_PROVIDERS: {} providers for {n} shards puts {per_provider} shards on one provider, more than the {} parity shards can cover",
                providers.len(),
                settings.parity_shards
            )));
        }
        let rs = ReedSolomon::new(settings.data_shards, settings.parity_shards).map_err(|e| {
            Error::Config(format!(
                "SKYE_RS_DATA_SHARDS / SKYE_RS_PARITY_SHARDS: {e:?}"
            ))
        })?;
        Ok(Self {
            keys,
            providers,
            settings,
            rs: Arc::new(rs),
            spare_buffers: Default::default(),
        })
    }

    pub fn providers(&self) -> &[Arc<dyn ObjectStore>] {
        &self.providers
    }

    pub fn keys(&self) -> &Arc<dyn KeyProvider> {
        &self.keys
    }

    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    fn provider(&self, id: &str) -> Result<&Arc<dyn ObjectStore>> {
        self.providers
            .iter()
            .find(|p| p.id() == id)
            .ok_or_else(|| Error::Integrity(format!("manifest names unknown provider `{id}`")))
    }

    /// Spreads shards round-robin from a random start, so load evens out across versions.
    fn placement(&self, n: usize, random: &[u8]) -> Vec<usize> {
        let start = random.iter().fold(0usize, |acc, b| {
            acc.wrapping_mul(256).wrapping_add(usize::from(*b))
        }) % self.providers.len();
        (0..n).map(|i| (start + i) % self.providers.len()).collect()
    }

    /// Stores a plaintext stream as a new encrypted, erasure-coded object. `limit` caps its size.
    pub async fn put(
        &self,
        file_id: &str,
        group_id: &str,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<Manifest> {
        let k = self.settings.data_shards;
        let n = k + self.settings.parity_shards;
        let segment = self.settings.segment_bytes as usize;
        let stripe_bytes = segment * k;
        let version_id = ids::new_id();
        let data_key = self.keys.generate(&key_context(file_id, group_id)).await?;
        // One draw from the OS for the nonce prefix, the placement and the object keys: a
        // system call each was a third of a small save's fixed cost.
        let random = ids::random_vec(NONCE_PREFIX_BYTES + 8 + n * OBJECT_KEY_BYTES);
        let (nonce_prefix, rest) = random.split_at(NONCE_PREFIX_BYTES);
        let (start, key_bytes) = rest.split_at(8);
        let nonce_prefix: [u8; NONCE_PREFIX_BYTES] = nonce_prefix
            .try_into()
            .map_err(|_| Error::internal("nonce prefix size"))?;
        let cipher = SegmentCipher::new(&data_key.plaintext, nonce_prefix, file_id, &version_id);

        // One writer task per shard, fed through a small channel: memory stays at a few stripes.
        let placement = self.placement(n, start);
        let mut senders = Vec::with_capacity(n);
        let mut writers = Vec::with_capacity(n);
        let mut object_keys = Vec::with_capacity(n);
        for (&p, key_bytes) in placement.iter().zip(key_bytes.chunks(OBJECT_KEY_BYTES)) {
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            let key = format!("{SHARD_PREFIX}{}", ids::hex(key_bytes));
            let provider = self.providers[p].clone();
            let object_key = key.clone();
            let stream: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok(b), rx))
            }));
            writers.push(tokio::spawn(async move {
                provider.put(&object_key, stream).await
            }));
            senders.push(Some(tx));
            object_keys.push(key);
        }

        let mut digests: Vec<Vec<u8>> = vec![Vec::new(); n];
        let mut encoder = StripeEncoder {
            cipher: &cipher,
            rs: &self.rs,
            version_id: &version_id,
            k,
            n,
            segment,
            handed_out: Default::default(),
            spare: &self.spare_buffers,
        };
        let mut input = PlainQueue::default();
        let mut total = 0u64;
        let mut stripe = 0u64;
        let mut eof = false;
        let feed: Result<()> = async {
            loop {
                while !eof && input.len <= stripe_bytes {
                    match body.next().await {
                        Some(chunk) => {
                            let chunk = chunk?;
                            total += chunk.len() as u64;
                            if total > limit {
                                return Err(Error::TooLarge(format!(
                                    "document larger than {limit} bytes"
                                )));
                            }
                            input.push(chunk);
                        }
                        None => eof = true,
                    }
                }
                // A stripe is final only when nothing follows it.
                let last = eof && input.len <= stripe_bytes;
                let plain_len = input.len.min(stripe_bytes);
                // A stripe takes a few milliseconds of CPU: done in place, it keeps every
                // buffer on one thread and lets the encoder reuse them.
                let pieces = encoder.encode(&mut input, plain_len, stripe, last)?;
                for (i, (piece, digest)) in pieces.into_iter().enumerate() {
                    digests[i].extend_from_slice(&digest);
                    let Some(tx) = &senders[i] else { continue };
                    let sent =
                        tokio::time::timeout(self.settings.provider_timeout, tx.send(piece)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        tracing::warn!(
                            shard = i,
                            provider = self.providers[placement[i]].id(),
                            "shard write failed"
                        );
                        senders[i] = None;
                    }
                }
                stripe += 1;
                if last {
                    return Ok(());
                }
            }
        }
        .await;
        drop(senders);

        let mut stored = vec![false; n];
        for (i, writer) in writers.into_iter().enumerate() {
            let abort = writer.abort_handle();
            match tokio::time::timeout(self.settings.provider_timeout, writer).await {
                Ok(Ok(Ok(_))) => stored[i] = true,
                Ok(Ok(Err(e))) => tracing::warn!(shard = i, error = %e, "shard write failed"),
                Ok(Err(e)) => tracing::warn!(shard = i, error = %e, "shard writer crashed"),
                Err(_) => {
                    abort.abort();
                    tracing::warn!(shard = i, "shard write timed out");
                }
            }
        }
        // Every writer is done: the stripe buffers go back to the vault for the next put.
        drop(encoder);
        let stored_count = stored.iter().filter(|s| **s).count();
        if feed.is_err() || stored_count < self.settings.min_write_shards {
            for (i, key) in object_keys.iter().enumerate() {
                let _ = self.providers[placement[i]].delete(key).await;
            }
            feed?;
            return Err(Error::unavailable(
                "storage providers",
                format!(
                    "only {stored_count} of {n} shards stored, {} needed",
                    self.settings.min_write_shards
                ),
            ));
        }

        let geometry = Geometry {
            k,
            segment_size: segment as u64,
            plaintext_len: total,
        };
        let shards = (0..n)
            .map(|i| ShardRef {
                provider: self.providers[placement[i]].id().to_string(),
                key: object_keys[i].clone(),
                size: geometry.shard_len(),
                root: blake3::hash(&digests[i]).to_hex().to_string(),
                pieces: ids::b64(&digests[i]),
                missing: !stored[i],
            })
            .collect();
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            cipher: "AES-256-GCM".into(),
            erasure: "reed-solomon-gf8".into(),
            digest: "blake3".into(),
            file_id: file_id.to_string(),
            version_id,
            group_id: group_id.to_string(),
            data_shards: k as u8,
            parity_shards: (n - k) as u8,
            segment_size: segment as u32,
            plaintext_len: total,
            ciphertext_len: geometry.ciphertext_len(),
            wrapped_key: ids::b64(&data_key.wrapped),
            nonce_prefix: ids::b64(&nonce_prefix),
            shards,
        };
        Ok(manifest)
    }

    async fn cipher_for(&self, manifest: &Manifest) -> Result<SegmentCipher> {
        let wrapped = ids::unb64(&manifest.wrapped_key)
            .ok_or_else(|| Error::Integrity("manifest: wrapped key".into()))?;
        let prefix: [u8; NONCE_PREFIX_BYTES] = ids::unb64(&manifest.nonce_prefix)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| Error::Integrity("manifest: nonce prefix".into()))?;
        let key = self
            .keys
            .unwrap(
                &wrapped,
                &key_context(&manifest.file_id, &manifest.group_id),
            )
            .await?;
        Ok(SegmentCipher::new(
            &key,
            prefix,
            &manifest.file_id,
            &manifest.version_id,
        ))
    }

    /// Streams the verified plaintext of `manifest`, which must belong to `file_id`.
    /// Every segment is authenticated before any of its bytes are released.
    pub async fn get(&self, file_id: &str, manifest: &Manifest) -> Result<ByteStream> {
        if manifest.file_id != file_id {
            return Err(Error::Integrity("manifest belongs to another file".into()));
        }
        manifest.validate()?;
        let cipher = self.cipher_for(manifest).await?;
        let mut reader = StripeReader::new(self, manifest)?;
        // The first stripe is read before answering, so a broken version fails cleanly.
        let first = reader.next_plaintext(&cipher).await?;
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(2);
        tokio::spawn(async move {
            let mut pending = first;
            loop {
                for chunk in pending {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                if reader.done() {
                    reader.check_trailing().await;
                    return;
                }
                pending = match reader.next_plaintext(&cipher).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "vault read failed mid-stream");
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    /// Verifies every piece of every shard of one version.
    pub async fn scrub(&self, manifest: &Manifest) -> Result<ScrubReport> {
        manifest.validate()?;
        let g = manifest.geometry();
        let checks = manifest
            .shards
            .iter()
            .enumerate()
            .map(|(i, shard)| async move {
                if shard.missing {
                    return ShardHealth::Missing;
                }
                let Ok(provider) = self.provider(&shard.provider) else {
                    return ShardHealth::Missing;
                };
                match provider.head(&shard.key).await {
                    Ok(Some(meta)) if meta.size != shard.size => {
                        return ShardHealth::Corrupt(format!(
                            "size {} instead of {}",
                            meta.size, shard.size
                        ));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return ShardHealth::Missing,
                    Err(e) => return ShardHealth::Corrupt(format!("unreadable: {e}")),
                }
                let stream = match provider.get(&shard.key, 0).await {
                    Ok(s) => s,
                    Err(_) => return ShardHealth::Missing,
                };
                let digests = ids::unb64(&shard.pieces).unwrap_or_default();
                let mut reader = ShardReader {
                    stream,
                    buf: BytesMut::new(),
                    timeout: self.settings.provider_timeout,
                };
                for s in 0..g.stripes() {
                    let piece = match reader.read_exact(g.piece_len(s)).await {
                        Ok(p) => p,
                        Err(e) => return ShardHealth::Corrupt(format!("stripe {s}: {e}")),
                    };
                    let expected = &digests[s as usize * DIGEST_BYTES..][..DIGEST_BYTES];
                    if piece_digest(&manifest.version_id, i, s, &piece) != expected {
                        return ShardHealth::Corrupt(format!("stripe {s}: digest mismatch"));
                    }
                }
                if reader.has_trailing_bytes().await {
                    return ShardHealth::Corrupt("extra bytes after the last stripe".into());
                }
                ShardHealth::Ok
            });
        Ok(ScrubReport {
            shards: futures::future::join_all(checks).await,
        })
    }

    /// Rebuilds damaged or missing shards onto healthy providers. Returns the new manifest when
    /// anything changed; the old shard objects of rebuilt shards are deleted afterwards.
    pub async fn repair(&self, manifest: &Manifest) -> Result<Option<Manifest>> {
        let report = self.scrub(manifest).await?;
        let damaged: Vec<usize> = report
            .shards
            .iter()
            .enumerate()
            .filter(|(_, h)| **h != ShardHealth::Ok)
            .map(|(i, _)| i)
            .collect();
        if damaged.is_empty() {
            return Ok(None);
        }
        let n = manifest.total_shards();
        if n - damaged.len() < manifest.data_shards as usize {
            return Err(Error::Integrity(format!(
                "{} of {n} shards damaged: beyond repair",
                damaged.len()
            )));
        }
        let g = manifest.geometry();
        // Targets: keep each shard's provider when it takes writes, else the least used one.
        let mut new_manifest = manifest.clone();
        let mut writers = BTreeMap::new();
        for &i in &damaged {
            let mut candidates: Vec<&Arc<dyn ObjectStore>> = Vec::new();
            if let Ok(p) = self.provider(&manifest.shards[i].provider) {
                candidates.push(p);
            }
            let mut others: Vec<&Arc<dyn ObjectStore>> = self.providers.iter().collect();
            others.sort_by_key(|p| {
                new_manifest
                    .shards
                    .iter()
                    .filter(|s| s.provider == p.id())
                    .count()
            });
            candidates.extend(others);
            let key = format!("{SHARD_PREFIX}{}", ids::random_hex(OBJECT_KEY_BYTES));
            let mut chosen = None;
            for p in candidates {
                let on_it = new_manifest
                    .shards
                    .iter()
                    .enumerate()
                    .filter(|(j, s)| *j != i && s.provider == p.id())
                    .count();
                if on_it + 1 > manifest.parity_shards as usize {
                    continue;
                }
                // A tiny probe write tells whether the provider takes writes right now.
                let probe = format!("{SHARD_PREFIX}probe-{}", ids::random_hex(8));
                if p.put(&probe, crate::storage::objects::once_stream(Bytes::new()))
                    .await
                    .is_ok()
                {
                    let _ = p.delete(&probe).await;
                    chosen = Some(p.clone());
                    break;
                }
            }
            let provider = chosen.ok_or_else(|| {
                Error::unavailable("storage providers", "no healthy provider to repair onto")
            })?;
            new_manifest.shards[i].provider = provider.id().to_string();
            new_manifest.shards[i].key = key.clone();
            new_manifest.shards[i].missing = false;
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            let stream: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok(b), rx))
            }));
            let writer = tokio::spawn(async move { provider.put(&key, stream).await });
            writers.insert(i, (tx, writer));
        }

        let mut reader = StripeReader::new(self, manifest)?;
        for &i in &damaged {
            reader.erased[i] = true;
        }
        for s in 0..g.stripes() {
            let mut pieces = reader.read_stripe(s, true).await?;
            self.rs
                .reconstruct(&mut pieces)
                .map_err(|e| Error::Integrity(format!("reconstruct: {e:?}")))?;
            for (&i, (tx, _)) in writers.iter() {
                let piece = pieces[i]
                    .take()
                    .ok_or_else(|| Error::internal("reconstruction left a gap"))?;
                let expected = &reader.digests[i][s as usize * DIGEST_BYTES..][..DIGEST_BYTES];
                if piece_digest(&manifest.version_id, i, s, &piece) != expected {
                    return Err(Error::Integrity(format!(
                        "rebuilt shard {i} does not match its digest"
                    )));
                }
                tx.send(piece.freeze())
                    .await
                    .map_err(|_| Error::unavailable("storage providers", "repair write failed"))?;
            }
        }
        for (_, (tx, writer)) in writers {
            drop(tx);
            writer.await.map_err(Error::internal)??;
        }
        for &i in &damaged {
            let old = &manifest.shards[i];
            if let Ok(p) = self.provider(&old.provider)
                && (old.provider != new_manifest.shards[i].provider
                    || old.key != new_manifest.shards[i].key)
            {
                let _ = p.delete(&old.key).await;
            }
        }
        Ok(Some(new_manifest))
    }

    /// Deletes every shard of a manifest (best effort; leftovers are collected by `gc`).
    pub async fn delete(&self, manifest: &Manifest) {
        for shard in &manifest.shards {
            if let Ok(p) = self.provider(&shard.provider)
                && let Err(e) = p.delete(&shard.key).await
            {
                tracing::warn!(provider = %shard.provider, error = %e, "shard delete failed; gc will retry");
            }
        }
    }

    /// Removes shard objects that no manifest references and that are older than `margin`
    /// (younger ones may belong to a put still in progress). Returns how many were removed.
    pub async fn gc(
        &self,
        referenced: &HashSet<(String, String)>,
        margin: Duration,
    ) -> Result<usize> {
        let cutoff = SystemTime::now()
            .checked_sub(margin)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        for p in &self.providers {
            for object in p.list(SHARD_PREFIX).await? {
                if object.last_modified < cutoff
                    && !referenced.contains(&(p.id().to_string(), object.key.clone()))
                {
                    p.delete(&object.key).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Plaintext waiting to be sealed: the stream's chunks, kept as they came.
#[derive(Default)]
struct PlainQueue {
    chunks: std::collections::VecDeque<Bytes>,
    len: usize,
}

impl PlainQueue {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// The next `n` bytes without a copy, when one chunk holds them all.
    fn take_whole(&mut self, n: usize) -> Option<Bytes> {
        let front = self.chunks.front_mut()?;
        if front.len() < n {
            return None;
        }
        let out = front.split_to(n);
        if front.is_empty() {
            self.chunks.pop_front();
        }
        self.len -= n;
        Some(out)
    }

    /// Copies the next `out.len()` bytes into `out`; the caller knows they are queued.
    fn take_into(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            let n = front.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&front[..n]);
            bytes::Buf::advance(front, n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            filled += n;
            self.len -= n;
        }
    }
}

/// Parity is computed and hashed in blocks this wide (a power of two, so BLAKE3 takes each
/// block as whole subtrees).
const PARITY_COLUMN: usize = 32 * 1024;

/// Stripe buffers handed to shard writers, kept so they can be reused once every writer has
/// let go: fresh memory costs a page fault per 4 KiB, as much as sealing it.
const STRIPE_BUFFERS: usize = 3;

/// Seals stripes of plaintext into `n` pieces (k data, m parity) with their digests. One buffer
/// per stripe holds all its pieces; the pieces handed out are views of it.
struct StripeEncoder<'a> {
    cipher: &'a SegmentCipher,
    rs: &'a ReedSolomon,
    version_id: &'a str,
    k: usize,
    n: usize,
    segment: usize,
    handed_out: std::collections::VecDeque<Bytes>,
    /// The vault's buffers kept between puts.
    spare: &'a std::sync::Mutex<Vec<BytesMut>>,
}

impl Drop for StripeEncoder<'_> {
    /// Gives the buffers every writer is done with back to the vault for the next put.
    fn drop(&mut self) {
        if let Ok(mut spare) = self.spare.lock() {
            for buf in self.handed_out.drain(..) {
                if spare.len() >= STRIPE_BUFFERS {
                    break;
                }
                if let Ok(buf) = buf.try_into_mut() {
                    spare.push(buf);
                }
            }
        }
    }
}

impl StripeEncoder<'_> {
    /// A buffer of `len` bytes whose contents do not matter: a stripe's buffer that every
    /// writer is done with, else a fresh one.
    fn buffer(&mut self, len: usize) -> BytesMut {
        let reusable = self.handed_out.iter().position(Bytes::is_unique);
        let reclaimed = match reusable {
            Some(i) => self
                .handed_out
                .remove(i)
                .and_then(|b| b.try_into_mut().ok()),
            None => {
                // Do not pin buffers a slow writer still holds.
                if self.handed_out.len() >= STRIPE_BUFFERS {
                    self.handed_out.pop_front();
                }
                self.spare.lock().ok().and_then(|mut spare| spare.pop())
            }
        };
        match reclaimed {
            Some(mut buf) => {
                // Only bytes beyond the old length are written here.
                buf.resize(len, 0);
                buf
            }
            None => BytesMut::zeroed(len),
        }
    }

    /// Seals `plain_len` bytes of `input` as stripe `stripe` and erasure-codes it.
    fn encode(
        &mut self,
        input: &mut PlainQueue,
        plain_len: usize,
        stripe: u64,
        last: bool,
    ) -> Result<Vec<(Bytes, [u8; DIGEST_BYTES])>> {
        let (k, n, segment) = (self.k, self.n, self.segment);
        let segments = plain_len.div_ceil(segment).max(1);
        let sealed_len = plain_len + segments * TAG_BYTES;
        let piece_len = sealed_len.div_ceil(k);
        let mut buf = self.buffer(n * piece_len);
        let (data, parity) = buf.split_at_mut(k * piece_len);
        let mut digests = Vec::with_capacity(n);
        // Each piece is hashed as soon as it is complete, while it is still in cache.
        let hash_ready = |digests: &mut Vec<_>, data: &[u8], upto: usize| {
            while digests.len() < k && (digests.len() + 1) * piece_len <= upto {
                let i = digests.len();
                let piece = &data[i * piece_len..(i + 1) * piece_len];
                digests.push(piece_digest(self.version_id, i, stripe, piece));
            }
        };
        let mut offset = 0;
        for j in 0..segments {
            let len = (plain_len - j * segment).min(segment);
            let out = &mut data[offset..offset + len + TAG_BYTES];
            let index = stripe * k as u64 + j as u64;
            let last_segment = last && j + 1 == segments;
            match input.take_whole(len) {
                Some(plain) => self.cipher.seal_from(index, last_segment, &plain, out)?,
                None => {
                    input.take_into(&mut out[..len]);
                    self.cipher.seal(index, last_segment, out)?;
                }
            }
            offset += len + TAG_BYTES;
            if j + 1 < segments {
                hash_ready(&mut digests, data, offset);
            }
        }
        // Padding of a short stripe must be zero: readers and parity both count on it.
        data[offset..].fill(0);
        hash_ready(&mut digests, data, data.len());
        // Parity column block by column block: each block's parity stays in the core's own
        // cache while the k data blocks are folded in, and is hashed before it leaves.
        let mut parity_hashers: Vec<blake3::Hasher> = (k..n).map(|_| piece_hasher()).collect();
        let mut column = 0;
        while column < piece_len {
            let end = (column + PARITY_COLUMN).min(piece_len);
            let data_blocks: Vec<&[u8]> = data
                .chunks(piece_len)
                .map(|piece| &piece[column..end])
                .collect();
            let mut parity_blocks: Vec<&mut [u8]> = parity
                .chunks_mut(piece_len)
                .map(|piece| &mut piece[column..end])
                .collect();
            self.rs
                .encode_sep(&data_blocks, &mut parity_blocks)
                .map_err(|e| Error::internal(format_args!("erasure encode: {e:?}")))?;
            for (hasher, block) in parity_hashers.iter_mut().zip(&parity_blocks) {
                hasher.update(block);
            }
            column = end;
        }
        for (p, hasher) in parity_hashers.into_iter().enumerate() {
            digests.push(finish_piece_digest(hasher, self.version_id, k + p, stripe));
        }
        let whole = buf.freeze();
        let pieces = digests
            .into_iter()
            .enumerate()
            .map(|(i, digest)| (whole.slice(i * piece_len..(i + 1) * piece_len), digest))
            .collect();
        self.handed_out.push_back(whole);
        Ok(pieces)
    }
}

/// Reads stripes of one version, preferring data shards and falling back to parity for any
/// shard that is missing, unreadable or fails its digest.
struct StripeReader {
    vault: Vault,
    manifest: Manifest,
    geometry: Geometry,
    digests: Vec<Vec<u8>>,
    readers: Vec<Option<ShardReader>>,
    erased: Vec<bool>,
    next_stripe: u64,
}

impl StripeReader {
    fn new(vault: &Vault, manifest: &Manifest) -> Result<StripeReader> {
        let n = manifest.total_shards();
        let digests = manifest
            .shards
            .iter()
            .map(|s| {
                ids::unb64(&s.pieces)
                    .ok_or_else(|| Error::Integrity("manifest: piece digests".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StripeReader {
            vault: vault.clone(),
            geometry: manifest.geometry(),
            manifest: manifest.clone(),
            digests,
            readers: (0..n).map(|_| None).collect(),
            erased: manifest.shards.iter().map(|s| s.missing).collect(),
            next_stripe: 0,
        })
    }

    fn done(&self) -> bool {
        self.next_stripe >= self.geometry.stripes()
    }

    /// Reads and verifies shard `i`'s piece of stripe `s`, opening the shard there if needed.
    async fn piece(&mut self, i: usize, s: u64) -> Result<BytesMut> {
        let reader = self.readers[i].take();
        let mut solo = Self::solo(
            &self.vault,
            &self.manifest,
            &self.geometry,
            &self.digests[i],
            i,
            reader,
        );
        let result = solo.piece(s).await;
        self.readers[i] = solo.reader;
        result
    }

    /// Collects `k` verified pieces of stripe `s` (all healthy ones when `all`).
    async fn read_stripe(&mut self, s: u64, all: bool) -> Result<Vec<Option<BytesMut>>> {
        let k = self.manifest.data_shards as usize;
        let n = self.manifest.total_shards();
        let mut pieces: Vec<Option<BytesMut>> = vec![None; n];
        let mut have = 0;
        // Data shards in parallel first: the common case needs nothing else.
        let first: Vec<usize> = (0..n).filter(|&i| !self.erased[i]).take(k).collect();
        let mut readers: Vec<(usize, Option<ShardReader>)> =
            first.iter().map(|&i| (i, self.readers[i].take())).collect();
        let results = futures::future::join_all(readers.iter_mut().map(|(i, r)| {
            let i = *i;
            let mut single = Self::solo(
                &self.vault,
                &self.manifest,
                &self.geometry,
                &self.digests[i],
                i,
                r.take(),
            );
            async move {
                let result = single.piece(s).await;
                (i, single.reader, result)
            }
        }))
        .await;
        for (i, reader, result) in results {
            self.readers[i] = reader;
            match result {
                Ok(p) => {
                    pieces[i] = Some(p);
                    have += 1;
                }
                Err(e) => self.erase(i, s, &e),
            }
        }
        #[expect(
            clippy::needless_range_loop,
            reason = "the loop also calls methods on self per shard"
        )]
        for i in 0..n {
            if (have >= k && !all) || pieces[i].is_some() || self.erased[i] {
                continue;
            }
            match self.piece(i, s).await {
                Ok(p) => {
                    pieces[i] = Some(p);
                    have += 1;
                }
                Err(e) => self.erase(i, s, &e),
            }
        }
        if have < k {
            return Err(Error::Integrity(format!(
                "only {have} of {n} shards readable at stripe {s}; {k} needed"
            )));
        }
        Ok(pieces)
    }

    fn erase(&mut self, i: usize, s: u64, e: &Error) {
        tracing::warn!(shard = i, stripe = s, provider = %self.manifest.shards[i].provider, error = %e, "shard erased; using parity");
        self.erased[i] = true;
        self.readers[i] = None;
    }

    fn solo<'b>(
        vault: &'b Vault,
        manifest: &'b Manifest,
        geometry: &'b Geometry,
        digests: &'b [u8],
        index: usize,
        reader: Option<ShardReader>,
    ) -> SoloReader<'b> {
        SoloReader {
            vault,
            manifest,
            geometry,
            digests,
            index,
            reader,
        }
    }

    /// Reads, reconstructs and decrypts the next stripe; returns its plaintext segments.
    async fn next_plaintext(&mut self, cipher: &SegmentCipher) -> Result<Vec<Bytes>> {
        let s = self.next_stripe;
        let k = self.manifest.data_shards as usize;
        let mut pieces = self.read_stripe(s, false).await?;
        if pieces[..k].iter().any(Option::is_none) {
            self.vault
                .rs
                .reconstruct_data(&mut pieces)
                .map_err(|e| Error::Integrity(format!("reconstruct: {e:?}")))?;
        }
        let g = self.geometry;
        let mut data = pieces
            .into_iter()
            .take(k)
            .map(|p| p.ok_or_else(|| Error::internal("missing data piece")))
            .collect::<Result<Vec<BytesMut>>>()?;
        if !g.segment_aligned(s) {
            // A short last stripe: its sealed segments run on across the data pieces.
            let mut joined = BytesMut::with_capacity(k * g.piece_len(s));
            for piece in &data {
                joined.extend_from_slice(piece);
            }
            data = g
                .stripe_segments(s)
                .map(|index| joined.split_to(g.segment_cipher_len(index)))
                .collect();
        }
        let last_index = g.segments() - 1;
        let mut out = Vec::with_capacity(k);
        for (mut sealed, index) in data.into_iter().zip(g.stripe_segments(s)) {
            sealed.truncate(g.segment_cipher_len(index));
            let len = cipher.open(index, index == last_index, &mut sealed)?;
            sealed.truncate(len);
            if !sealed.is_empty() {
                out.push(sealed.freeze());
            }
        }
        self.next_stripe += 1;
        Ok(out)
    }

    /// Logs shards that carry bytes past their end (scrub reports and repair fixes them).
    async fn check_trailing(&mut self) {
        for (i, reader) in self.readers.iter_mut().enumerate() {
            if let Some(r) = reader
                && r.has_trailing_bytes().await
            {
                tracing::warn!(shard = i, "shard has extra bytes after its end; run scrub");
            }
        }
    }
}

/// One shard's reader detached from the stripe reader, so several can run in parallel.
struct SoloReader<'b> {
    vault: &'b Vault,
    manifest: &'b Manifest,
    geometry: &'b Geometry,
    digests: &'b [u8],
    index: usize,
    reader: Option<ShardReader>,
}

impl SoloReader<'_> {
    async fn piece(&mut self, s: u64) -> Result<BytesMut> {
        let timeout = self.vault.settings.provider_timeout;
        if self.reader.is_none() {
            let shard = &self.manifest.shards[self.index];
            let provider = self.vault.provider(&shard.provider)?;
            let stream = tokio::time::timeout(
                timeout,
                provider.get(&shard.key, self.geometry.piece_offset(s)),
            )
            .await
            .map_err(|_| Error::unavailable("provider", "open timed out"))??;
            self.reader = Some(ShardReader {
                stream,
                buf: BytesMut::new(),
                timeout,
            });
        }
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| Error::internal("reader vanished"))?;
        let piece = reader.read_exact(self.geometry.piece_len(s)).await?;
        let expected = &self.digests[s as usize * DIGEST_BYTES..][..DIGEST_BYTES];
        if piece_digest(&self.manifest.version_id, self.index, s, &piece) != expected {
            return Err(Error::Integrity(format!(
                "shard {} stripe {s}: digest mismatch",
                self.index
            )));
        }
        Ok(piece)
    }
}
