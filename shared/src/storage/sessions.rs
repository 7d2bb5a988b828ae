//! The session seam: editing sessions with expiry, and the one-open-session-per-file rule
//! that makes co-editors share one Document Server key.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::catalog::dynamo_err;
use super::jsondb::JsonDb;
use crate::error::{Error, Result};
use crate::model::{Session, SessionState};

/// How long a closed session stays readable, so late callbacks are recognised.
pub const CLOSED_RETENTION_SECS: i64 = 24 * 3600;

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Returns the file's open session if there is one, else stores `candidate` as the file's
    /// open session. Atomic: two users opening at once get the same session.
    async fn open_or_join(&self, candidate: Session) -> Result<Session>;
    /// A live session (open, or closed within the retention window); expired ones are gone.
    async fn get(&self, session_id: &str) -> Result<Option<Session>>;
    /// Writes back a session read with `get` (participants, expiry, version, errors).
    async fn update(&self, session: &Session) -> Result<()>;
    /// Marks the session closed (kept readable for a day) and frees the file for a new session.
    async fn close(&self, session: &Session) -> Result<()>;
    async fn ping(&self) -> Result<()>;
}

/// Applies closing to a session record.
pub fn closed(session: &Session, now: i64) -> Session {
    let mut s = session.clone();
    s.state = SessionState::Closed;
    s.updated = now;
    s.expires_at = now + CLOSED_RETENTION_SECS;
    s
}

// ---------------------------------------------------------------- embedded

#[derive(Default, Serialize, Deserialize)]
struct SessionTable {
    sessions: BTreeMap<String, Session>,
    /// file id → session id of its open session.
    open: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct FileSessionStore {
    db: JsonDb<SessionTable>,
}

impl FileSessionStore {
    pub fn open(path: std::path::PathBuf) -> Result<Self> {
        Ok(Self {
            db: JsonDb::open(path)?,
        })
    }
}

#[async_trait]
impl SessionStore for FileSessionStore {
    async fn open_or_join(&self, candidate: Session) -> Result<Session> {
        self.db
            .update(move |s| {
                let now = crate::ids::now();
                s.sessions.retain(|_, session| session.is_live(now));
                if let Some(existing) = s
                    .open
                    .get(&candidate.file_id)
                    .and_then(|id| s.sessions.get(id))
                    && existing.is_open(now)
                {
                    return Ok(existing.clone());
                }
                s.open
                    .insert(candidate.file_id.clone(), candidate.session_id.clone());
                s.sessions
                    .insert(candidate.session_id.clone(), candidate.clone());
                Ok(candidate)
            })
            .await
    }

    async fn get(&self, session_id: &str) -> Result<Option<Session>> {
        let now = crate::ids::now();
        Ok(self
            .db
            .read()
            .await?
            .sessions
            .remove(session_id)
            .filter(|s| s.is_live(now)))
    }

    async fn update(&self, session: &Session) -> Result<()> {
        let session = session.clone();
        self.db
            .update(move |s| {
                if !s.sessions.contains_key(&session.session_id) {
                    return Err(Error::NotFound("session"));
                }
                s.sessions.insert(session.session_id.clone(), session);
                Ok(())
            })
            .await
    }

    async fn close(&self, session: &Session) -> Result<()> {
        let session = closed(session, crate::ids::now());
        self.db
            .update(move |s| {
                if s.open.get(&session.file_id) == Some(&session.session_id) {
                    s.open.remove(&session.file_id);
                }
                s.sessions.insert(session.session_id.clone(), session);
                Ok(())
            })
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.db.update(|_| Ok(())).await
    }
}

// ---------------------------------------------------------------- AWS: DynamoDB

/// Sessions table layout: `pk` = `S#<session_id>` (the session, `data` JSON, `expires_at` TTL)
/// or `O#<file_id>` (the file's open session id in `session_id`).
pub struct DynamoSessionStore {
    client: DynamoClient,
    table: String,
}

impl DynamoSessionStore {
    pub fn new(client: DynamoClient, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn session_item(session: &Session) -> Result<HashMap<String, AttributeValue>> {
        Ok(HashMap::from([
            (
                "pk".into(),
                AttributeValue::S(format!("S#{}", session.session_id)),
            ),
            (
                "data".into(),
                AttributeValue::S(serde_json::to_string(session)?),
            ),
            (
                "expires_at".into(),
                AttributeValue::N(session.expires_at.to_string()),
            ),
        ]))
    }

    async fn pointer(&self, file_id: &str) -> Result<Option<String>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("O#{file_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(out
            .item
            .and_then(|i| i.get("session_id").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn delete_pointer_if(&self, file_id: &str, session_id: &str) -> Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("O#{file_id}")))
            .condition_expression("session_id = :sid")
            .expression_attribute_values(":sid", AttributeValue::S(session_id.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(dynamo_err(e)),
        }
    }
}

#[async_trait]
impl SessionStore for DynamoSessionStore {
    async fn open_or_join(&self, candidate: Session) -> Result<Session> {
        for _ in 0..8 {
            let pointer = Put::builder()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(format!("O#{}", candidate.file_id)))
                .item(
                    "session_id",
                    AttributeValue::S(candidate.session_id.clone()),
                )
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(Error::internal)?;
            let session = Put::builder()
                .table_name(&self.table)
                .set_item(Some(Self::session_item(&candidate)?))
                .build()
                .map_err(Error::internal)?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(pointer).build())
                .transact_items(TransactWriteItem::builder().put(session).build())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(candidate),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_transaction_canceled_exception()) => {}
                Err(e) => return Err(dynamo_err(e)),
            }
            // Someone holds the file: join their session if it is still open, else free it.
            let Some(existing_id) = self.pointer(&candidate.file_id).await? else {
                continue;
            };
            match self.get(&existing_id).await? {
                Some(existing) if existing.is_open(crate::ids::now()) => return Ok(existing),
                _ => {
                    self.delete_pointer_if(&candidate.file_id, &existing_id)
                        .await?
                }
            }
        }
        Err(Error::Conflict(
            "could not open an editing session; try again".into(),
        ))
    }

    async fn get(&self, session_id: &str) -> Result<Option<Session>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("S#{session_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_err)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let data = item
            .get("data")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| Error::internal("session item without data"))?;
        let session: Session = serde_json::from_str(data)?;
        // DynamoDB's TTL deletes lazily (emulators never): expiry is enforced here.
        Ok(session.is_live(crate::ids::now()).then_some(session))
    }

    async fn update(&self, session: &Session) -> Result<()> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::session_item(session)?))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(Error::NotFound("session"))
            }
            Err(e) => Err(dynamo_err(e)),
        }
    }

    async fn close(&self, session: &Session) -> Result<()> {
        let session = closed(session, crate::ids::now());
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::session_item(&session)?))
            .build()
            .map_err(Error::internal)?;
        let release = Delete::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("O#{}", session.file_id)))
            .condition_expression("attribute_not_exists(pk) OR session_id = :sid")
            .expression_attribute_values(":sid", AttributeValue::S(session.session_id.clone()))
            .build()
            .map_err(Error::internal)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put.clone()).build())
            .transact_items(TransactWriteItem::builder().delete(release).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The pointer already names a newer session: just record this one as closed.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_transaction_canceled_exception()) =>
            {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(Self::session_item(&session)?))
                    .send()
                    .await
                    .map_err(dynamo_err)?;
                Ok(())
            }
            Err(e) => Err(dynamo_err(e)),
        }
    }

    async fn ping(&self) -> Result<()> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S("S#health-check".into()))
            .send()
            .await
            .map_err(dynamo_err)?;
        Ok(())
    }
}
