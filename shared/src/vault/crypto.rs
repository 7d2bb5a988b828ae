//! Segmented AES-256-GCM: every segment is sealed on its own, with a nonce made of the object's
//! random prefix, the segment counter and a last-segment flag, and associated data binding the
//! file, the version and the segment index. Reordering, dropping, truncating or moving segments
//! to another object all fail authentication.

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};

use crate::error::{Error, Result};

pub const TAG_BYTES: usize = 16;
pub const NONCE_PREFIX_BYTES: usize = 7;

#[derive(Clone)]
pub struct SegmentCipher {
    cipher: Aes256Gcm,
    nonce_prefix: [u8; NONCE_PREFIX_BYTES],
    /// Length-prefixed file id and object id, shared by every segment's associated data.
    binding: Vec<u8>,
}

impl SegmentCipher {
    pub fn new(
        key: &[u8; 32],
        nonce_prefix: [u8; NONCE_PREFIX_BYTES],
        file_id: &str,
        object_id: &str,
    ) -> Self {
        let mut binding = b"skye-segment-v1".to_vec();
        for part in [file_id, object_id] {
            binding.extend_from_slice(&(part.len() as u32).to_be_bytes());
            binding.extend_from_slice(part.as_bytes());
        }
        // A 32-byte key always makes a valid AES-256 cipher.
        let cipher = Aes256Gcm::new(&(*key).into());
        Self {
            cipher,
            nonce_prefix,
            binding,
        }
    }

    fn nonce(&self, index: u64, last: bool) -> Result<Nonce<aes_gcm::aead::consts::U12>> {
        let counter = u32::try_from(index)
            .map_err(|_| Error::TooLarge("object has too many segments".into()))?;
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&self.nonce_prefix);
        nonce[7..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = u8::from(last);
        Ok(Nonce::from(nonce))
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.binding.len() + 9);
        aad.extend_from_slice(&self.binding);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    /// Encrypts `buf[..len - 16]` in place and writes the tag into the last 16 bytes.
    pub fn seal(&self, index: u64, last: bool, buf: &mut [u8]) -> Result<()> {
        let split = buf
            .len()
            .checked_sub(TAG_BYTES)
            .ok_or_else(|| Error::internal("segment buffer too short"))?;
        let (msg, tag_out) = buf.split_at_mut(split);
        self.seal_inout(index, last, msg.into(), tag_out)
    }

    /// Encrypts `plain` into `out`, which is `plain.len() + 16` bytes: the tag goes last. Reading
    /// the plaintext where it lies saves copying it first.
    pub fn seal_from(&self, index: u64, last: bool, plain: &[u8], out: &mut [u8]) -> Result<()> {
        if out.len() != plain.len() + TAG_BYTES {
            return Err(Error::internal("segment buffer of the wrong size"));
        }
        let (msg, tag_out) = out.split_at_mut(plain.len());
        let buf = InOutBuf::new(plain, msg).map_err(|_| Error::internal("segment sizes differ"))?;
        self.seal_inout(index, last, buf, tag_out)
    }

    fn seal_inout(
        &self,
        index: u64,
        last: bool,
        buf: InOutBuf<'_, '_, u8>,
        tag_out: &mut [u8],
    ) -> Result<()> {
        let tag = self
            .cipher
            .encrypt_inout_detached(&self.nonce(index, last)?, &self.aad(index, last), buf)
            .map_err(|_| Error::internal("segment encryption failed"))?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }

    /// Authenticates and decrypts a sealed segment in place; returns the plaintext length.
    pub fn open(&self, index: u64, last: bool, buf: &mut [u8]) -> Result<usize> {
        let split = buf
            .len()
            .checked_sub(TAG_BYTES)
            .ok_or_else(|| Error::Integrity(format!("segment {index} is truncated")))?;
        let (msg, tag) = buf.split_at_mut(split);
        let tag = Tag::try_from(&*tag).map_err(|_| Error::Integrity("bad tag".into()))?;
        self.cipher
            .decrypt_inout_detached(
                &self.nonce(index, last)?,
                &self.aad(index, last),
                msg.into(),
                &tag,
            )
            .map_err(|_| Error::Integrity(format!("segment {index} failed authentication")))?;
        Ok(split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_bound_to_index_flag_and_object() {
        let key = [7u8; 32];
        let c = SegmentCipher::new(&key, [1; 7], "file", "v1");
        let mut buf = b"hello world\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        c.seal(3, false, &mut buf).unwrap();
        assert_ne!(&buf[..11], b"hello world");
        let sealed = buf.clone();
        assert!(c.open(4, false, &mut buf.clone()).is_err(), "moved segment");
        assert!(
            c.open(3, true, &mut buf.clone()).is_err(),
            "forged last flag"
        );
        let other = SegmentCipher::new(&key, [1; 7], "file", "v2");
        assert!(
            other.open(3, false, &mut buf.clone()).is_err(),
            "other version"
        );
        let n = c.open(3, false, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello world");
        let mut out = vec![0u8; 11 + TAG_BYTES];
        c.seal_from(3, false, b"hello world", &mut out).unwrap();
        assert_eq!(
            out, sealed,
            "sealing from a separate buffer gives the same bytes"
        );
        let mut flipped = sealed;
        flipped[0] ^= 1;
        assert!(c.open(3, false, &mut flipped).is_err(), "flipped bit");
    }
}
