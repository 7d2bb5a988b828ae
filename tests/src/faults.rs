//! A provider wrapper that fails, hangs, corrupts or slows down on command.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use eurooffice_connector::storage::{ByteStream, ObjectMeta, ObjectStore};
use eurooffice_connector::{Error, Result};
use futures::StreamExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Every call fails at once.
    Fail,
    /// Every call waits (far) past any timeout.
    Hang,
    /// Reads return the object with one byte flipped.
    Corrupt,
    /// Every chunk is delayed.
    Slow(Duration),
}

#[derive(Clone)]
pub struct FaultSwitch(Arc<Mutex<Fault>>);

impl FaultSwitch {
    pub fn set(&self, fault: Fault) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }
    pub fn get(&self) -> Fault {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Faulty {
    inner: Arc<dyn ObjectStore>,
    switch: FaultSwitch,
}

/// Wraps each provider; returns the wrapped list and one switch per provider.
pub fn wrap_all(
    providers: &[Arc<dyn ObjectStore>],
) -> (Vec<Arc<dyn ObjectStore>>, Vec<FaultSwitch>) {
    providers
        .iter()
        .map(|p| {
            let switch = FaultSwitch(Arc::new(Mutex::new(Fault::None)));
            (
                Arc::new(Faulty {
                    inner: p.clone(),
                    switch: switch.clone(),
                }) as Arc<dyn ObjectStore>,
                switch,
            )
        })
        .unzip()
}

impl Faulty {
    async fn gate(&self) -> Result<()> {
        match self.switch.get() {
            Fault::Fail => Err(Error::unavailable(
                format!("provider {}", self.inner.id()),
                "injected failure",
            )),
            Fault::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(Error::unavailable("provider", "hung"))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    fn id(&self) -> &str {
        self.inner.id()
    }
    async fn put(&self, key: &str, body: ByteStream) -> Result<u64> {
        self.gate().await?;
        let switch = self.switch.clone();
        let body: ByteStream = Box::pin(body.then(move |chunk| {
            let switch = switch.clone();
            async move {
                match switch.get() {
                    Fault::Slow(d) => tokio::time::sleep(d).await,
                    Fault::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                    Fault::Fail => return Err(Error::unavailable("provider", "injected failure")),
                    _ => {}
                }
                chunk
            }
        }));
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str, offset: u64) -> Result<ByteStream> {
        self.gate().await?;
        let stream = self.inner.get(key, offset).await?;
        match self.switch.get() {
            Fault::Corrupt => {
                let mut first = true;
                Ok(Box::pin(stream.map(move |chunk| {
                    let chunk = chunk?;
                    if first && !chunk.is_empty() {
                        first = false;
                        let mut m = BytesMut::from(&chunk[..]);
                        m[0] ^= 0x40;
                        return Ok(m.freeze());
                    }
                    Ok::<Bytes, Error>(chunk)
                })))
            }
            Fault::Slow(d) => Ok(Box::pin(stream.then(move |c| async move {
                tokio::time::sleep(d).await;
                c
            }))),
            _ => Ok(stream),
        }
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.gate().await?;
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.gate().await?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.gate().await?;
        self.inner.list(prefix).await
    }
}
