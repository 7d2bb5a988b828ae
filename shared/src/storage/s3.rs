//! Objects in an S3-compatible bucket: shard providers and the temp store in `aws` mode.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::BytesMut;
use futures::StreamExt;

use super::objects::{ByteStream, ObjectMeta, ObjectStore, check_key};
use crate::error::{Error, Result};

/// Multipart part size: S3 needs at least 5 MiB for all but the last part.
const PART_BYTES: usize = 5 * 1024 * 1024;

pub struct S3Store {
    id: String,
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    pub fn new(id: impl Into<String>, client: Client, bucket: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            client,
            bucket: bucket.into(),
            prefix: String::new(),
        }
    }

    /// Keeps every key of this store below `prefix/` (tests share buckets this way).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", prefix.trim_end_matches('/'))
        };
        self
    }

    fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn fail(&self, e: impl std::fmt::Display) -> Error {
        Error::unavailable(format!("provider {}", self.id), e)
    }

    async fn put_multipart(&self, key: &str, first: BytesMut, mut body: ByteStream) -> Result<u64> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.fail(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let result: Result<u64> = async {
            let mut parts = Vec::new();
            let mut total = 0u64;
            let mut pending = first;
            let mut eof = false;
            loop {
                while !eof && pending.len() < PART_BYTES {
                    match body.next().await {
                        Some(chunk) => pending.extend_from_slice(&chunk?),
                        None => eof = true,
                    }
                }
                if pending.is_empty() {
                    break;
                }
                // Only the last part may be short.
                let take = if eof { pending.len() } else { PART_BYTES };
                let part = pending.split_to(take).freeze();
                let number = parts.len() as i32 + 1;
                total += part.len() as u64;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(S3Body::from(part))
                    .send()
                    .await
                    .map_err(|e| self.fail(aws_sdk_s3::error::DisplayErrorContext(e)))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(String::from))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.fail(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn id(&self) -> &str {
        &self.id
    }

    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64> {
        let key = self.full_key(key)?;
        // Small objects (most shards of most documents) go up in one request; a stream that
        // outgrows one part switches to a multipart upload, so memory stays at one part.
        let mut first = BytesMut::new();
        while first.len() < PART_BYTES {
            match body.next().await {
                Some(chunk) => first.extend_from_slice(&chunk?),
                None => {
                    let len = first.len() as u64;
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(&key)
                        .body(S3Body::from(first.freeze()))
                        .send()
                        .await
                        .map_err(|e| self.fail(aws_sdk_s3::error::DisplayErrorContext(e)))?;
                    return Ok(len);
                }
            }
        }
        self.put_multipart(&key, first, body).await
    }

    async fn get(&self, key: &str, offset: u64) -> Result<ByteStream> {
        let key = self.full_key(key)?;
        let mut request = self.client.get_object().bucket(&self.bucket).key(&key);
        if offset > 0 {
            request = request.range(format!("bytes={offset}-"));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) => {
                if let Some(service) = e.as_service_error()
                    && service.is_no_such_key()
                {
                    return Err(Error::NotFound("object"));
                }
                if e.raw_response().map(|r| r.status().as_u16()) == Some(416) {
                    return Ok(Box::pin(futures::stream::empty()));
                }
                return Err(self.fail(aws_sdk_s3::error::DisplayErrorContext(e)));
            }
        };
        let id = self.id.clone();
        Ok(Box::pin(futures::stream::try_unfold(
            out.body,
            move |mut body| {
                let id = id.clone();
                async move {
                    match body.try_next().await {
                        Ok(Some(chunk)) => Ok(Some((chunk, body))),
                        Ok(None) => Ok(None),
                        Err(e) => Err(Error::unavailable(format!("provider {id}"), e)),
                    }
                }
            },
        )))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let full = self.full_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                last_modified: out
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                    Ok(None)
                } else {
                    Err(self.fail(aws_sdk_s3::error::DisplayErrorContext(e)))
                }
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let key = self.full_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.fail(aws_sdk_s3::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail(aws_sdk_s3::error::DisplayErrorContext(e)))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ObjectMeta {
                    key: key.strip_prefix(&self.prefix).unwrap_or(key).to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }
}
