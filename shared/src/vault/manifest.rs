//! The manifest: everything needed to find, verify and decrypt one stored object, and nothing
//! that reveals its content. Kept in the catalog.

use serde::{Deserialize, Serialize};

use super::crypto::TAG_BYTES;
use crate::error::{Error, Result};

/// 2: the last stripe's sealed bytes are split evenly over the data pieces (format 1 padded
/// every piece to a whole segment, storing up to 6x a small document).
pub const MANIFEST_FORMAT: u32 = 2;
pub const DIGEST_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// `AES-256-GCM` in segments.
    pub cipher: String,
    /// `reed-solomon-gf8`.
    pub erasure: String,
    /// `blake3` per stripe piece.
    pub digest: String,
    pub file_id: String,
    /// Random id of this object; also its associated-data binding.
    pub version_id: String,
    /// Key context: data keys unwrap only for this file and version group.
    pub group_id: String,
    pub data_shards: u8,
    pub parity_shards: u8,
    /// Plaintext bytes per segment; a stripe is `data_shards` segments.
    pub segment_size: u32,
    pub plaintext_len: u64,
    pub ciphertext_len: u64,
    /// Base64 of the wrapped data key.
    pub wrapped_key: String,
    /// Base64 of the 7-byte nonce prefix.
    pub nonce_prefix: String,
    pub shards: Vec<ShardRef>,
}

/// One shard: where it lives and how to verify it stripe by stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRef {
    pub provider: String,
    /// Random object key: says nothing about the file, owner or version order.
    pub key: String,
    pub size: u64,
    /// Hex BLAKE3 over the piece digests.
    pub root: String,
    /// Base64 of the concatenated 32-byte piece digests, one per stripe.
    pub pieces: String,
    /// Not stored when the version was written (degraded write): repair will write it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

/// Sizes derived from a manifest (or from the parameters of a put).
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub k: usize,
    pub segment_size: u64,
    pub plaintext_len: u64,
}

impl Geometry {
    pub fn segments(&self) -> u64 {
        self.plaintext_len.div_ceil(self.segment_size).max(1)
    }
    pub fn segment_plain_len(&self, index: u64) -> u64 {
        if index + 1 == self.segments() {
            self.plaintext_len - index * self.segment_size
        } else {
            self.segment_size
        }
    }
    pub fn segment_cipher_len(&self, index: u64) -> usize {
        (self.segment_plain_len(index) as usize) + TAG_BYTES
    }
    pub fn stripes(&self) -> u64 {
        self.segments().div_ceil(self.k as u64)
    }
    /// Segments of stripe `s` (the last may have fewer than k).
    pub fn stripe_segments(&self, s: u64) -> std::ops::Range<u64> {
        let start = s * self.k as u64;
        start..(start + self.k as u64).min(self.segments())
    }
    /// Sealed bytes of stripe `s`: its segments with their tags, back to back.
    pub fn stripe_cipher_len(&self, s: u64) -> usize {
        self.stripe_segments(s)
            .map(|i| self.segment_cipher_len(i))
            .sum()
    }
    /// A stripe's sealed bytes split evenly over its `k` data pieces, the last one zero-padded:
    /// a full stripe has one sealed segment per piece, a short one stays 1/k per piece.
    pub fn piece_len(&self, s: u64) -> usize {
        self.stripe_cipher_len(s).div_ceil(self.k)
    }
    /// True when data piece `j` of stripe `s` starts with sealed segment `j` (every stripe but
    /// a short last one), so segments are opened where they lie.
    pub fn segment_aligned(&self, s: u64) -> bool {
        self.piece_len(s) == self.segment_size as usize + TAG_BYTES
    }
    /// Byte offset of stripe `s` within each shard.
    pub fn piece_offset(&self, s: u64) -> u64 {
        let full = self.segment_size + TAG_BYTES as u64;
        // Every stripe before the last is full: one sealed segment per piece.
        s * full
    }
    pub fn shard_len(&self) -> u64 {
        (0..self.stripes()).map(|s| self.piece_len(s) as u64).sum()
    }
    pub fn ciphertext_len(&self) -> u64 {
        self.plaintext_len + self.segments() * TAG_BYTES as u64
    }
}

impl Manifest {
    pub fn geometry(&self) -> Geometry {
        Geometry {
            k: self.data_shards as usize,
            segment_size: self.segment_size as u64,
            plaintext_len: self.plaintext_len,
        }
    }

    pub fn total_shards(&self) -> usize {
        self.data_shards as usize + self.parity_shards as usize
    }

    /// Checks internal consistency before anything is fetched.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Integrity(format!("manifest: {what}")));
        if self.format != MANIFEST_FORMAT {
            return bad("unknown format version");
        }
        if self.data_shards == 0
            || self.parity_shards == 0
            || self.shards.len() != self.total_shards()
        {
            return bad("shard counts do not match");
        }
        if self.segment_size == 0 || self.segment_size > 64 * 1024 * 1024 {
            return bad("segment size out of range");
        }
        let g = self.geometry();
        if g.ciphertext_len() != self.ciphertext_len {
            return bad("ciphertext length does not match plaintext length");
        }
        let stripes = g.stripes() as usize;
        for shard in &self.shards {
            if shard.size != g.shard_len() {
                return bad("shard size does not match geometry");
            }
            let Some(pieces) = crate::ids::unb64(&shard.pieces) else {
                return bad("piece digests");
            };
            if pieces.len() != stripes * DIGEST_BYTES
                || blake3::hash(&pieces).to_hex().as_str() != shard.root
            {
                return bad("piece digests do not match their root");
            }
        }
        Ok(())
    }
}
