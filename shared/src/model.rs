//! The records the catalog and the session store keep.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vault::Manifest;

/// What a user other than the owner may do with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Edit,
    View,
}

/// A stored document: name, owner, sharing, and which version is current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub file_id: String,
    /// File name with extension, as shown to users.
    pub title: String,
    pub owner: String,
    #[serde(default)]
    pub acl: BTreeMap<String, Access>,
    /// Number of the current version (versions count from 1).
    pub head: u32,
    /// Binds every version's data key to this file (KMS encryption context).
    pub version_group_id: String,
    pub created: i64,
    pub updated: i64,
}

impl FileRecord {
    /// Lower-case extension of the title, without the dot.
    pub fn extension(&self) -> String {
        extension_of(&self.title)
    }

    /// The access `user` has: the owner edits, ACL entries say, anyone else has none.
    pub fn access_for(&self, user: &str) -> Option<Access> {
        if self.owner == user {
            Some(Access::Edit)
        } else {
            self.acl.get(user).copied()
        }
    }
}

pub fn extension_of(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    Current,
    Archived,
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Import,
    ForceSave,
    Save,
    Restore,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Import => "import",
            Origin::ForceSave => "force-save",
            Origin::Save => "save",
            Origin::Restore => "restore",
        }
    }
}

/// One stored version: where its shards are and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub file_id: String,
    pub number: u32,
    pub state: VersionState,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Lower-case extension of this version's format.
    pub format: String,
    pub created: i64,
    pub author: String,
    pub origin: Origin,
    pub manifest: Manifest,
    /// The editor's changes zip for this version (history), stored through the vault too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Manifest>,
    /// Document Server's `history` object for this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<serde_json::Value>,
    /// BLAKE3 of the plaintext, hex.
    pub digest: String,
}

impl VersionRecord {
    pub fn version_id(&self) -> &str {
        &self.manifest.version_id
    }

    /// Puts a repaired manifest in place of the one (document or changes) it was made from.
    pub fn replace_manifest(&mut self, repaired: &Manifest) -> crate::Result<()> {
        let slot = if self.manifest.version_id == repaired.version_id {
            &mut self.manifest
        } else {
            match &mut self.changes {
                Some(changes) if changes.version_id == repaired.version_id => changes,
                _ => {
                    return Err(crate::Error::Conflict(
                        "manifest belongs to another version".into(),
                    ));
                }
            }
        };
        *slot = repaired.clone();
        Ok(())
    }
}

/// Where an editing session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Open,
    Closed,
}

/// An editing session: one Document Server `key`, shared by every co-editor of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    pub file_id: String,
    /// Version the editors are working on (moves forward on force-save).
    pub version: u32,
    /// Document Server `document.key`.
    pub key: String,
    /// Exact `document.url` given to Document Server; download tokens must name it.
    pub document_url: String,
    /// Format of the document as opened.
    pub format: String,
    /// User id → display name of everyone who joined.
    #[serde(default)]
    pub participants: BTreeMap<String, String>,
    /// User ids Document Server reports as connected now.
    #[serde(default)]
    pub connected: Vec<String>,
    pub state: SessionState,
    pub created: i64,
    pub updated: i64,
    /// Unix seconds after which the session is gone (also the DynamoDB TTL attribute).
    pub expires_at: i64,
    /// Last save error reported by Document Server (status 3 or 7), for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Session {
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }

    pub fn is_open(&self, now: i64) -> bool {
        self.state == SessionState::Open && self.is_live(now)
    }
}
