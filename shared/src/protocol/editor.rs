//! The editor configuration handed to `new DocsAPI.DocEditor(...)`, signed for Document Server.

use serde_json::{Value, json};

use super::formats::{DocumentType, Format};
use super::identity::User;
use crate::config::Config;
use crate::error::Result;
use crate::model::Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Edit,
    View,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Edit => "edit",
            Mode::View => "view",
        }
    }
}

/// `document.key` may hold only `0-9 a-z A-Z . _ - =` and at most 128 characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '='))
}

pub fn callback_url(config: &Config, session_id: &str) -> String {
    format!(
        "{}/api/eurooffice/callback/{session_id}",
        config.callback_base()
    )
}

pub fn document_url(config: &Config, session_id: &str) -> String {
    format!("{}/api/eurooffice/file/{session_id}", config.file_base())
}

/// One user opening a session's document.
pub struct Opening<'a> {
    pub session: &'a Session,
    pub title: &'a str,
    pub format: Format,
    pub user: &'a User,
    pub mode: Mode,
    pub lang: &'a str,
}

/// Builds the config (with its `token`) for one user of a session.
pub fn build(config: &Config, secret: &str, opening: &Opening<'_>) -> Result<Value> {
    let Opening {
        session,
        title,
        format,
        user,
        mode,
        lang,
    } = *opening;
    let edit = mode == Mode::Edit;
    let reviewable = matches!(
        session.format.as_str(),
        "docx" | "docm" | "dotx" | "dotm" | "odt" | "ott" | "rtf"
    );
    let mut value = json!({
        "documentType": format.document_type.as_str(),
        "document": {
            "fileType": session.format,
            "key": session.key,
            "title": truncate_title(title),
            "url": session.document_url,
            "permissions": {
                "edit": edit,
                "comment": edit,
                "review": edit && reviewable,
                "fillForms": edit || format.document_type == DocumentType::Pdf,
                "download": true,
                "print": true,
                "copy": true,
                "chat": true,
            },
        },
        "editorConfig": {
            "callbackUrl": callback_url(config, &session.session_id),
            "mode": mode.as_str(),
            "lang": lang,
            "user": { "id": user.id, "name": user.name },
            "coEditing": { "mode": "fast", "change": true },
            "customization": { "forcesave": true },
        },
    });
    let token = super::jwt::sign(secret, &value, config.config_token_ttl_secs)?;
    value["token"] = Value::String(token);
    Ok(value)
}

/// Titles are limited to 128 characters; keep the extension when cutting.
fn truncate_title(title: &str) -> String {
    if title.chars().count() <= 128 {
        return title.to_string();
    }
    let ext = crate::model::extension_of(title);
    let keep = 127 - ext.chars().count();
    format!("{}.{ext}", title.chars().take(keep).collect::<String>())
}
