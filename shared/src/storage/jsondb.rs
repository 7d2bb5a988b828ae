//! A JSON document on disk, changed under an exclusive file lock and replaced atomically, so
//! several processes (`skye serve` and `skye import`, say) can share it safely.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub struct JsonDb<T> {
    path: PathBuf,
    lock_path: PathBuf,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonDb<T> {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            lock_path: self.lock_path.clone(),
            _kind: PhantomData,
        }
    }
}

impl<T: Default + Serialize + DeserializeOwned + Send + 'static> JsonDb<T> {
    pub fn open(path: PathBuf) -> Result<Self> {
        if let Some(parent) = path.parent() {
            super::objects::create_private_dir(parent)?;
        }
        let lock_path = path.with_extension("lock");
        Ok(Self {
            path,
            lock_path,
            _kind: PhantomData,
        })
    }

    fn lock_file(&self) -> Result<File> {
        Ok(OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)?)
    }

    fn load(&self) -> Result<T> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::internal(format_args!("{} is corrupt: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a consistent snapshot.
    pub async fn read(&self) -> Result<T> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let lock = db.lock_file()?;
            lock.lock_shared()?;
            db.load()
        })
        .await
        .map_err(Error::internal)?
    }

    /// Runs `change` on the current state under the exclusive lock; the state is written back
    /// only when `change` succeeds.
    pub async fn update<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut T) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let lock = db.lock_file()?;
            lock.lock()?;
            let mut state = db.load()?;
            let out = change(&mut state)?;
            let temp = db
                .path
                .with_extension(format!("tmp-{}", crate::ids::random_hex(6)));
            let write = || -> Result<()> {
                let mut options = OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&temp)?;
                file.write_all(&serde_json::to_vec(&state)?)?;
                file.sync_all()?;
                std::fs::rename(&temp, &db.path)?;
                Ok(())
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
            Ok(out)
        })
        .await
        .map_err(Error::internal)?
    }
}
