//! The key seam: per-version data keys, wrapped by a master key that never leaves its home.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use async_trait::async_trait;
use aws_sdk_kms::Client as KmsClient;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::error::{Error, Result};

/// Binds a data key to what it protects; unwrapping with another context fails.
pub type KeyContext = BTreeMap<String, String>;

/// A fresh data key: the plaintext for use in memory, the wrapped form for the manifest.
pub struct DataKey {
    pub plaintext: [u8; 32],
    pub wrapped: Vec<u8>,
}

#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// Short description for health output and logs (never key material).
    fn describe(&self) -> String;
    async fn generate(&self, context: &KeyContext) -> Result<DataKey>;
    async fn unwrap(&self, wrapped: &[u8], context: &KeyContext) -> Result<[u8; 32]>;
}

/// A master key in a local file: for running on one machine, not for production.
pub struct LocalKeyProvider {
    master: Aes256Gcm,
    path: PathBuf,
}

const LOCAL_WRAP_MAGIC: &[u8; 4] = b"SKL1";

impl LocalKeyProvider {
    /// Loads the master key at `path`, creating it (mode 0600) on first run.
    pub fn open(path: &Path) -> Result<Self> {
        let key = read_or_create_secret_file(path, 32)?;
        let master = Aes256Gcm::new_from_slice(&key).map_err(|_| {
            Error::Config(format!("{} does not hold a 32-byte key", path.display()))
        })?;
        Ok(Self {
            master,
            path: path.to_path_buf(),
        })
    }
}

/// Canonical bytes of a context: sorted `key=value` lines, so both sides agree exactly.
fn context_bytes(context: &KeyContext) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
    }
    out
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn describe(&self) -> String {
        format!("local master key {}", self.path.display())
    }

    async fn generate(&self, context: &KeyContext) -> Result<DataKey> {
        let plaintext = crate::ids::random_bytes::<32>();
        let nonce = crate::ids::random_bytes::<12>();
        let mut sealed = plaintext;
        let tag = self
            .master
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &context_bytes(context),
                (&mut sealed[..]).into(),
            )
            .map_err(|_| Error::internal("wrapping a data key failed"))?;
        let mut wrapped = Vec::with_capacity(4 + 12 + 32 + 16);
        wrapped.extend_from_slice(LOCAL_WRAP_MAGIC);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        wrapped.extend_from_slice(&tag);
        Ok(DataKey { plaintext, wrapped })
    }

    async fn unwrap(&self, wrapped: &[u8], context: &KeyContext) -> Result<[u8; 32]> {
        if wrapped.len() != 64 || &wrapped[..4] != LOCAL_WRAP_MAGIC {
            return Err(Error::Integrity("wrapped key has the wrong shape".into()));
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&wrapped[4..16]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&wrapped[16..48]);
        let tag =
            Tag::try_from(&wrapped[48..64]).map_err(|_| Error::Integrity("bad tag".into()))?;
        self.master
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &context_bytes(context),
                (&mut key[..]).into(),
                &tag,
            )
            .map_err(|_| Error::Integrity("data key does not unwrap under this context".into()))?;
        Ok(key)
    }
}

/// AWS KMS: `GenerateDataKey` / `Decrypt` with an encryption context.
pub struct KmsKeyProvider {
    client: KmsClient,
    key_id: String,
}

impl KmsKeyProvider {
    pub fn new(client: KmsClient, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn describe(&self) -> String {
        format!("KMS key {}", self.key_id)
    }

    async fn generate(&self, context: &KeyContext) -> Result<DataKey> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| Error::unavailable("KMS", aws_sdk_kms::error::DisplayErrorContext(e)))?;
        let plaintext: [u8; 32] = out
            .plaintext()
            .map(|b| b.as_ref())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::internal("KMS returned a data key of the wrong size"))?;
        let wrapped = out
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| Error::internal("KMS returned no wrapped key"))?;
        Ok(DataKey { plaintext, wrapped })
    }

    async fn unwrap(&self, wrapped: &[u8], context: &KeyContext) -> Result<[u8; 32]> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| {
                let refused = e.as_service_error().is_some_and(|s| {
                    s.is_invalid_ciphertext_exception() || s.is_incorrect_key_exception()
                });
                if refused {
                    Error::Integrity("data key does not unwrap under this context".into())
                } else {
                    Error::unavailable("KMS", aws_sdk_kms::error::DisplayErrorContext(e))
                }
            })?;
        out.plaintext()
            .map(|b| b.as_ref())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::internal("KMS returned a data key of the wrong size"))
    }
}

/// Reads a secret file, or creates it with `len` random bytes and mode 0600. Safe when two
/// processes start at once: exactly one creates it, the other reads what was written.
pub fn read_or_create_secret_file(path: &Path, len: usize) -> Result<Vec<u8>> {
    if let Some(parent) = path.parent() {
        crate::storage::objects::create_private_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.lock()?;
            let mut bytes = vec![0u8; len];
            getrandom::fill(&mut bytes).map_err(|e| Error::internal(format_args!("rng: {e}")))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let file = std::fs::File::open(path)?;
            // Waits for a creator still writing.
            file.lock_shared()?;
            let bytes = std::fs::read(path)?;
            if bytes.len() != len {
                return Err(Error::Config(format!(
                    "{} should hold {len} bytes",
                    path.display()
                )));
            }
            Ok(bytes)
        }
        Err(e) => Err(e.into()),
    }
}
