//! The Document Server (ONLYOFFICE Docs API) protocol and user identity.

pub mod editor;
pub mod formats;
pub mod identity;
pub mod jwt;
