//! Outside edges that hold state: objects (shard providers, temp store), catalog, sessions.

pub mod catalog;
mod jsondb;
pub mod objects;
pub mod s3;
pub mod sessions;

pub use catalog::{Catalog, CommitOutcome, DynamoCatalog, FileCatalog, VersionCommit};
pub use objects::{ByteStream, DirStore, MemStore, ObjectMeta, ObjectStore};
pub use s3::S3Store;
pub use sessions::{DynamoSessionStore, FileSessionStore, SessionStore};
