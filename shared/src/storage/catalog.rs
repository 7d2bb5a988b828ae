//! The catalog seam: files, their versions and sharing. Versions commit in one conditional
//! transaction so concurrent saves never overwrite each other and retries never duplicate.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::jsondb::JsonDb;
use crate::error::{Error, Result};
use crate::model::{Access, FileRecord, VersionRecord, VersionState};
use crate::vault::Manifest;

/// A new version to make current, replacing version `expected_head`.
#[derive(Debug, Clone)]
pub struct VersionCommit {
    pub expected_head: u32,
    /// Its `number` must be `expected_head + 1`.
    pub version: VersionRecord,
    /// New file title when the format changed (doc → docx).
    pub title: Option<String>,
    /// Identifies the save (session, lastsave, status, content digest): committed at most once.
    pub marker: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    Committed,
    /// The marker was committed before, as this version number.
    Duplicate(u32),
    /// Another save became current first: re-read and commit as the next number.
    HeadMoved,
}

/// How long save markers are kept: far longer than Document Server retries for.
pub const MARKER_TTL_SECS: i64 = 30 * 24 * 3600;

#[async_trait]
pub trait Catalog: Send + Sync {
    /// Creates a file with its first version; fails with `Conflict` if the id exists.
    async fn create_file(&self, file: &FileRecord, first: &VersionRecord) -> Result<()>;
    async fn file(&self, file_id: &str) -> Result<Option<FileRecord>>;
    async fn files(&self) -> Result<Vec<FileRecord>>;
    /// Every version, oldest first.
    async fn versions(&self, file_id: &str) -> Result<Vec<VersionRecord>>;
    async fn version(&self, file_id: &str, number: u32) -> Result<Option<VersionRecord>>;
    async fn commit_version(&self, file_id: &str, commit: &VersionCommit) -> Result<CommitOutcome>;
    /// The version a save marker committed, if any.
    async fn marker(&self, file_id: &str, marker: &str) -> Result<Option<u32>>;
    /// Replaces the manifest of a version's document or of its changes, whichever `manifest`
    /// was repaired from (repair moved or rebuilt shards).
    async fn replace_manifest(&self, file_id: &str, number: u32, manifest: &Manifest)
    -> Result<()>;
    /// Grants (`Some`) or revokes (`None`) a user's access.
    async fn set_access(&self, file_id: &str, user: &str, access: Option<Access>) -> Result<()>;
    /// A cheap real round trip, for health.
    async fn ping(&self) -> Result<()>;
}

fn check_commit(file: &FileRecord, commit: &VersionCommit) -> Result<()> {
    if commit.version.number != commit.expected_head + 1 || commit.version.file_id != file.file_id {
        return Err(Error::internal("version commit numbered inconsistently"));
    }
    Ok(())
}

fn committed_file(file: &FileRecord, commit: &VersionCommit) -> FileRecord {
    let mut next = file.clone();
    next.head = commit.version.number;
    next.updated = commit.version.created;
    if let Some(title) = &commit.title {
        next.title = title.clone();
    }
    next
}

// ---------------------------------------------------------------- embedded: one JSON file

#[derive(Default, Serialize, Deserialize)]
struct CatalogState {
    files: BTreeMap<String, FileRecord>,
    versions: BTreeMap<String, Vec<VersionRecord>>,
    /// `file_id/marker` → (version number, expiry).
    markers: BTreeMap<String, (u32, i64)>,
}

/// The embedded catalog: `catalog.json` in the data directory.
#[derive(Clone)]
pub struct FileCatalog {
    db: JsonDb<CatalogState>,
}

impl FileCatalog {
    pub fn open(path: std::path::PathBuf) -> Result<Self> {
        Ok(Self {
            db: JsonDb::open(path)?,
        })
    }
}

#[async_trait]
impl Catalog for FileCatalog {
    async fn create_file(&self, file: &FileRecord, first: &VersionRecord) -> Result<()> {
        let (file, first) = (file.clone(), first.clone());
        self.db
            .update(move |s| {
                if s.files.contains_key(&file.file_id) {
                    return Err(Error::Conflict(format!("file {} exists", file.file_id)));
                }
                s.versions.insert(file.file_id.clone(), vec![first]);
                s.files.insert(file.file_id.clone(), file);
                Ok(())
            })
            .await
    }

    async fn file(&self, file_id: &str) -> Result<Option<FileRecord>> {
        Ok(self.db.read().await?.files.remove(file_id))
    }

    async fn files(&self) -> Result<Vec<FileRecord>> {
        Ok(self.db.read().await?.files.into_values().collect())
    }

    async fn versions(&self, file_id: &str) -> Result<Vec<VersionRecord>> {
        Ok(self
            .db
            .read()
            .await?
            .versions
            .remove(file_id)
            .unwrap_or_default())
    }

    async fn version(&self, file_id: &str, number: u32) -> Result<Option<VersionRecord>> {
        Ok(self
            .versions(file_id)
            .await?
            .into_iter()
            .find(|v| v.number == number))
    }

    async fn commit_version(&self, file_id: &str, commit: &VersionCommit) -> Result<CommitOutcome> {
        let (file_id, commit) = (file_id.to_string(), commit.clone());
        self.db
            .update(move |s| {
                let marker_key = format!("{file_id}/{}", commit.marker);
                if let Some((number, _)) = s.markers.get(&marker_key) {
                    return Ok(CommitOutcome::Duplicate(*number));
                }
                let file = s.files.get(&file_id).ok_or(Error::NotFound("file"))?;
                check_commit(file, &commit)?;
                if file.head != commit.expected_head {
                    return Ok(CommitOutcome::HeadMoved);
                }
                let next = committed_file(file, &commit);
                let versions = s.versions.entry(file_id.clone()).or_default();
                for v in versions
                    .iter_mut()
                    .filter(|v| v.number == commit.expected_head)
                {
                    v.state = VersionState::Archived;
                }
                versions.push(commit.version.clone());
                s.files.insert(file_id.clone(), next);
                let now = crate::ids::now();
                s.markers.retain(|_, (_, expires)| *expires > now);
                s.markers
                    .insert(marker_key, (commit.version.number, now + MARKER_TTL_SECS));
                Ok(CommitOutcome::Committed)
            })
            .await
    }

    async fn marker(&self, file_id: &str, marker: &str) -> Result<Option<u32>> {
        let now = crate::ids::now();
        Ok(self
            .db
            .read()
            .await?
            .markers
            .get(&format!("{file_id}/{marker}"))
            .filter(|(_, expires)| *expires > now)
            .map(|(n, _)| *n))
    }

    async fn replace_manifest(
        &self,
        file_id: &str,
        number: u32,
        manifest: &Manifest,
    ) -> Result<()> {
        let (file_id, manifest) = (file_id.to_string(), manifest.clone());
        self.db
            .update(move |s| {
                let version = s
                    .versions
                    .get_mut(&file_id)
                    .and_then(|vs| vs.iter_mut().find(|v| v.number == number))
                    .ok_or(Error::NotFound("version"))?;
                version.replace_manifest(&manifest)
            })
            .await
    }

    async fn set_access(&self, file_id: &str, user: &str, access: Option<Access>) -> Result<()> {
        let (file_id, user) = (file_id.to_string(), user.to_string());
        self.db
            .update(move |s| {
                let file = s.files.get_mut(&file_id).ok_or(Error::NotFound("file"))?;
                match access {
                    Some(a) => file.acl.insert(user, a),
                    None => file.acl.remove(&user),
                };
                file.updated = crate::ids::now();
                Ok(())
            })
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.db.update(|_| Ok(())).await
    }
}

// ---------------------------------------------------------------- AWS: DynamoDB

/// Files table layout: `pk` = `F#<file_id>`; `sk` = `FILE` (the file, with `head` and `rev`),
/// `V#<number, 10 digits>` (a version), `M#<marker>` (a committed save, with `expires_at`).
pub struct DynamoCatalog {
    client: DynamoClient,
    table: String,
}

impl DynamoCatalog {
    pub fn new(client: DynamoClient, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn pk(file_id: &str) -> AttributeValue {
    AttributeValue::S(format!("F#{file_id}"))
}
fn version_sk(number: u32) -> AttributeValue {
    AttributeValue::S(format!("V#{number:010}"))
}
fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
pub(crate) fn dynamo_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::unavailable("DynamoDB", aws_sdk_dynamodb::error::DisplayErrorContext(e))
}

fn data_of<T: serde::de::DeserializeOwned>(item: &HashMap<String, AttributeValue>) -> Result<T> {
    let data = item
        .get("data")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::internal("catalog item without data"))?;
    Ok(serde_json::from_str(data)?)
}

fn number_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

impl DynamoCatalog {
    async fn file_item(&self, file_id: &str) -> Result<Option<(FileRecord, i64)>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(file_id))
            .key("sk", s("FILE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        match out.item {
            None => Ok(None),
            Some(item) => Ok(Some((
                data_of(&item)?,
                number_of(&item, "rev").unwrap_or(0),
            ))),
        }
    }

    fn file_item_map(file: &FileRecord, rev: i64) -> Result<HashMap<String, AttributeValue>> {
        Ok(HashMap::from([
            ("pk".to_string(), pk(&file.file_id)),
            ("sk".to_string(), s("FILE")),
            ("data".to_string(), s(serde_json::to_string(file)?)),
            ("head".to_string(), n(file.head)),
            ("rev".to_string(), n(rev)),
        ]))
    }

    fn version_item_map(v: &VersionRecord) -> Result<HashMap<String, AttributeValue>> {
        Ok(HashMap::from([
            ("pk".to_string(), pk(&v.file_id)),
            ("sk".to_string(), version_sk(v.number)),
            ("data".to_string(), s(serde_json::to_string(v)?)),
        ]))
    }

    /// Optimistic read-modify-write of the file item, guarded by its revision.
    async fn update_file(&self, file_id: &str, change: impl Fn(&mut FileRecord)) -> Result<()> {
        for _ in 0..8 {
            let (mut file, rev) = self
                .file_item(file_id)
                .await?
                .ok_or(Error::NotFound("file"))?;
            change(&mut file);
            let item = Self::file_item_map(&file, rev + 1)?;
            if self
                .put_if(item, "rev = :rev", None, (":rev", n(rev)))
                .await?
            {
                return Ok(());
            }
        }
        Err(Error::Conflict(
            "file changed concurrently too often".into(),
        ))
    }

    /// A version's raw item, read consistently.
    async fn version_item(
        &self,
        file_id: &str,
        number: u32,
    ) -> Result<Option<HashMap<String, AttributeValue>>> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(file_id))
            .key("sk", version_sk(number))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?
            .item)
    }

    /// Writes `item` if `condition` holds; `Ok(false)` when it does not (another writer won).
    async fn put_if(
        &self,
        item: HashMap<String, AttributeValue>,
        condition: &str,
        name: Option<(&str, &str)>,
        value: (&str, AttributeValue),
    ) -> Result<bool> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_values(value.0, value.1);
        if let Some((placeholder, attribute)) = name {
            request = request.expression_attribute_names(placeholder, attribute);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(dynamo_err(e)),
        }
    }
}

#[async_trait]
impl Catalog for DynamoCatalog {
    async fn create_file(&self, file: &FileRecord, first: &VersionRecord) -> Result<()> {
        let file_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::file_item_map(file, 1)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(Error::internal)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(file_put).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(Self::version_item_map(first)?))
                            .build()
                            .map_err(Error::internal)?,
                    )
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                Err(Error::Conflict(format!("file {} exists", file.file_id)))
            }
            Err(e) => Err(dynamo_err(e)),
        }
    }

    async fn file(&self, file_id: &str) -> Result<Option<FileRecord>> {
        Ok(self.file_item(file_id).await?.map(|(f, _)| f))
    }

    async fn files(&self) -> Result<Vec<FileRecord>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :file")
            .expression_attribute_values(":file", s("FILE"))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for item in page.map_err(dynamo_err)?.items() {
                out.push(data_of(item)?);
            }
        }
        out.sort_by(|a: &FileRecord, b| a.file_id.cmp(&b.file_id));
        Ok(out)
    }

    async fn versions(&self, file_id: &str) -> Result<Vec<VersionRecord>> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :v)")
            .expression_attribute_values(":pk", pk(file_id))
            .expression_attribute_values(":v", s("V#"))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for item in page.map_err(dynamo_err)?.items() {
                out.push(data_of(item)?);
            }
        }
        Ok(out)
    }

    async fn version(&self, file_id: &str, number: u32) -> Result<Option<VersionRecord>> {
        self.version_item(file_id, number)
            .await?
            .map(|item| data_of(&item))
            .transpose()
    }

    async fn commit_version(&self, file_id: &str, commit: &VersionCommit) -> Result<CommitOutcome> {
        if let Some(number) = self.marker(file_id, &commit.marker).await? {
            return Ok(CommitOutcome::Duplicate(number));
        }
        let (file, rev) = self
            .file_item(file_id)
            .await?
            .ok_or(Error::NotFound("file"))?;
        check_commit(&file, commit)?;
        if file.head != commit.expected_head {
            return Ok(CommitOutcome::HeadMoved);
        }
        let previous = self
            .version(file_id, commit.expected_head)
            .await?
            .ok_or_else(|| Error::internal("current version missing from catalog"))?;
        let mut archived = previous;
        archived.state = VersionState::Archived;

        let next = committed_file(&file, commit);
        let file_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::file_item_map(&next, rev + 1)?))
            .condition_expression("rev = :rev AND head = :head")
            .expression_attribute_values(":rev", n(rev))
            .expression_attribute_values(":head", n(commit.expected_head))
            .build()
            .map_err(Error::internal)?;
        let version_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::version_item_map(&commit.version)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(Error::internal)?;
        let archive = Update::builder()
            .table_name(&self.table)
            .key("pk", pk(file_id))
            .key("sk", version_sk(archived.number))
            .update_expression("SET #data = :data")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":data", s(serde_json::to_string(&archived)?))
            .build()
            .map_err(Error::internal)?;
        let marker_put = Put::builder()
            .table_name(&self.table)
            .item("pk", pk(file_id))
            .item("sk", s(format!("M#{}", commit.marker)))
            .item("number", n(commit.version.number))
            .item("expires_at", n(crate::ids::now() + MARKER_TTL_SECS))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(Error::internal)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(file_put).build())
            .transact_items(TransactWriteItem::builder().put(version_put).build())
            .transact_items(TransactWriteItem::builder().update(archive).build())
            .transact_items(TransactWriteItem::builder().put(marker_put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CommitOutcome::Committed),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                // Which condition failed decides: a marker that exists means this save is in.
                if let Some(number) = self.marker(file_id, &commit.marker).await? {
                    Ok(CommitOutcome::Duplicate(number))
                } else {
                    Ok(CommitOutcome::HeadMoved)
                }
            }
            Err(e) => Err(dynamo_err(e)),
        }
    }

    async fn marker(&self, file_id: &str, marker: &str) -> Result<Option<u32>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", pk(file_id))
            .key("sk", s(format!("M#{marker}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        let now = crate::ids::now();
        Ok(out.item.and_then(|item| {
            // Emulators never delete expired items: an item past its expiry counts as gone.
            let live = number_of(&item, "expires_at").is_none_or(|e| e > now);
            live.then(|| number_of(&item, "number").map(|n| n as u32))
                .flatten()
        }))
    }

    async fn replace_manifest(
        &self,
        file_id: &str,
        number: u32,
        manifest: &Manifest,
    ) -> Result<()> {
        // Guarded by the item as read: a save archiving this version meanwhile must not be
        // undone by writing back the state repair saw.
        for _ in 0..8 {
            let item = self
                .version_item(file_id, number)
                .await?
                .ok_or(Error::NotFound("version"))?;
            let before = item
                .get("data")
                .cloned()
                .ok_or_else(|| Error::internal("version item without data"))?;
            let mut version: VersionRecord = data_of(&item)?;
            version.replace_manifest(manifest)?;
            let item = Self::version_item_map(&version)?;
            // `data` is a reserved word in DynamoDB expressions.
            let unchanged = Some(("#d", "data"));
            if self
                .put_if(item, "#d = :before", unchanged, (":before", before))
                .await?
            {
                return Ok(());
            }
        }
        Err(Error::Conflict(
            "version kept changing during repair".into(),
        ))
    }

    async fn set_access(&self, file_id: &str, user: &str, access: Option<Access>) -> Result<()> {
        let now = crate::ids::now();
        self.update_file(file_id, |file| {
            match access {
                Some(a) => file.acl.insert(user.to_string(), a),
                None => file.acl.remove(user),
            };
            file.updated = now;
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("F#health-check"))
            .key("sk", s("FILE"))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }
}
