//! `POST /api/eurooffice/callback/{session_id}`: Document Server reports editing state and
//! hands back saved documents. Every save becomes exactly one new version; a failed save
//! commits nothing, keeps an encrypted staged copy and asks Document Server to retry.

use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::staging::{self, StageRequest};
use crate::app::App;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http::{header, json_response, read_body};
use crate::library::{self, NewVersion};
use crate::model::{Origin, Session, SessionState};
use crate::protocol::jwt;

#[derive(Debug, Deserialize)]
struct Callback {
    key: String,
    status: u8,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    changesurl: Option<String>,
    #[serde(default)]
    filetype: Option<String>,
    #[serde(default)]
    lastsave: Option<String>,
    #[serde(default)]
    notmodified: bool,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    history: Option<Value>,
    #[serde(default)]
    forcesavetype: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct Action {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    userid: Option<String>,
}

/// The protocol's reply: `{"error":0}` acknowledges; HTTP 5xx makes Document Server retry status 2.
fn reply(status: StatusCode, error: u8) -> Response {
    json_response(status, &json!({ "error": error }))
}

pub async fn handle(app: &App, session_id: &str, req: Request) -> Response {
    match process(app, session_id, req).await {
        Ok(()) => reply(StatusCode::OK, 0),
        Err(e) => {
            let mut status = e.status();
            if status.is_server_error() {
                tracing::error!(session_id, error = %e, "callback failed; Document Server will retry status 2");
                // The protocol's "try again" is a plain 500, whatever failed behind it.
                status = StatusCode::INTERNAL_SERVER_ERROR;
            } else {
                tracing::warn!(session_id, error = %e, "callback refused");
            }
            reply(status, 1)
        }
    }
}

async fn process(app: &App, session_id: &str, req: Request) -> Result<()> {
    let header_token = header(req.headers(), &app.config.eurooffice_jwt_header).map(str::to_string);
    let body = read_body(req.into_body(), crate::http::MAX_REQUEST_BYTES).await?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|_| Error::BadRequest("callback body is not JSON".into()))?;
    // The body token carries everything; the header token may lack long fields. Only verified
    // claims are acted on, never the unsigned body.
    let claims = match body.get("token").and_then(Value::as_str) {
        Some(token) => jwt::unwrap_payload(jwt::verify(&app.docserver_secret, token)?),
        None => {
            let raw = header_token.ok_or(Error::Unauthenticated)?;
            let token = jwt::bearer(&raw).ok_or(Error::Unauthenticated)?;
            jwt::unwrap_payload(jwt::verify(&app.docserver_secret, token)?)
        }
    };
    let callback: Callback = serde_json::from_value(Value::Object(claims))
        .map_err(|e| Error::BadRequest(format!("callback fields: {e}")))?;

    let Some(mut session) = app.sessions.get(session_id).await? else {
        if matches!(callback.status, 2 | 6) {
            tracing::error!(
                session_id,
                key = %callback.key,
                status = callback.status,
                "SAVE FOR UNKNOWN SESSION: Document Server holds edits no session expects; recover them from its forgotten files"
            );
            return Err(Error::internal("save callback for an unknown session"));
        }
        return Err(Error::NotFound("session"));
    };
    if callback.key != session.key {
        tracing::error!(session_id, key = %callback.key, "callback key does not match the session");
        return Err(Error::Forbidden(
            "key does not belong to this session".into(),
        ));
    }
    if session.state == SessionState::Closed && callback.status == 2 {
        // A session closes only after its final save is committed: this is a late retry.
        tracing::info!(session_id, "status 2 for a closed session: already saved");
        return Ok(());
    }
    let now = crate::ids::now();
    session.expires_at = session
        .expires_at
        .max(now + app.config.session_idle_secs as i64);
    session.updated = now;

    match callback.status {
        1 => {
            session.connected = callback.users.clone();
            app.sessions.update(&session).await
        }
        4 => app.sessions.close(&session).await,
        3 | 7 => {
            let what = if callback.status == 3 {
                "saving"
            } else {
                "force-saving"
            };
            tracing::error!(session_id, file_id = %session.file_id, "Document Server reported an error {what} the document");
            session.last_error = Some(format!(
                "Document Server error while {what} at {}",
                crate::ids::rfc3339(now)
            ));
            app.sessions.update(&session).await
        }
        6 => {
            tracing::info!(session_id, kind = ?callback.forcesavetype, "force-save");
            let number = save(app, &session, &callback, Origin::ForceSave).await?;
            session.version = number;
            app.sessions.update(&session).await
        }
        2 => {
            let current = save_id_of(&session, &callback);
            finish_staged(app, &mut session, &current).await?;
            if !callback.notmodified {
                session.version = save(app, &session, &callback, Origin::Save).await?;
            }
            app.sessions.close(&session).await
        }
        other => Err(Error::BadRequest(format!(
            "unknown callback status {other}"
        ))),
    }
}

/// Saves the callback's document as a new version; returns the version number.
async fn save(app: &App, session: &Session, callback: &Callback, origin: Origin) -> Result<u32> {
    let url = callback
        .url
        .as_deref()
        .ok_or_else(|| Error::BadRequest("save callback without url".into()))?;
    let save_id = save_id_of(session, callback);
    let format = callback
        .filetype
        .clone()
        .unwrap_or_else(|| session.format.clone())
        .to_ascii_lowercase();
    let author = callback
        .actions
        .iter()
        .rev()
        .find_map(|a| a.userid.clone().filter(|_| a.kind != 0))
        .or_else(|| callback.users.first().cloned())
        .or_else(|| session.participants.keys().next().cloned())
        .unwrap_or_else(|| "unknown".into());
    let limit = app.config.max_document_bytes;

    let staged = staging::find(app, &session.session_id, &save_id)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not look for a staged copy");
            None
        });
    let bytes = match download(app, url, limit).await {
        Ok(bytes) => bytes,
        Err(e) => match &staged {
            Some(meta) => {
                tracing::warn!(error = %e, "download failed; finishing the save from its staged copy");
                staging::load(app, meta).await?
            }
            None => return Err(e),
        },
    };
    let changes = match callback.changesurl.as_deref() {
        Some(changes_url) => match download(app, changes_url, limit).await {
            Ok(zip) => Some(zip),
            Err(e) => {
                tracing::warn!(error = %e, "changes zip unavailable; saving without history data");
                None
            }
        },
        None => None,
    };
    let new = NewVersion {
        author: author.clone(),
        origin,
        format: format.clone(),
        bytes: bytes.clone(),
        changes,
        history: callback.history.clone(),
        save_id: save_id.clone(),
    };
    match library::save_version(app, &session.file_id, new).await {
        Ok(saved) => {
            if saved.duplicate {
                tracing::info!(session_id = %session.session_id, version = saved.number, "save already committed");
            }
            if let Some(meta) = &staged
                && let Err(e) = staging::remove(app, meta).await
            {
                tracing::warn!(error = %e, "could not remove the staged copy");
            }
            Ok(saved.number)
        }
        Err(e) => {
            if staged.is_none() {
                let request = StageRequest {
                    file_id: &session.file_id,
                    session_id: &session.session_id,
                    save_id: &save_id,
                    origin,
                    format: &format,
                    author: &author,
                    history: callback.history.clone(),
                };
                if let Err(stage_error) = staging::stage(app, request, bytes).await {
                    tracing::error!(error = %stage_error, "could not stage the failed save either");
                }
            }
            Err(e)
        }
    }
}

/// What identifies one save apart from its bytes.
fn save_id_of(session: &Session, callback: &Callback) -> String {
    format!(
        "{}|{}|{}",
        session.session_id,
        callback.lastsave.as_deref().unwrap_or(""),
        callback.status
    )
}

/// Commits saves that failed earlier in this session, oldest first, before a newer one. The
/// current callback's own staged copy is left to `save`, which prefers a fresh download.
async fn finish_staged(app: &App, session: &mut Session, current: &str) -> Result<()> {
    for meta in staging::pending(app, &session.session_id).await? {
        if meta.save_id == current {
            continue;
        }
        let bytes = staging::load(app, &meta).await?;
        let new = NewVersion {
            author: meta.author.clone(),
            origin: meta.origin,
            format: meta.format.clone(),
            bytes,
            changes: None,
            history: meta.history.clone(),
            save_id: meta.save_id.clone(),
        };
        let saved = library::save_version(app, &meta.file_id, new).await?;
        session.version = session.version.max(saved.number);
        staging::remove(app, &meta).await?;
    }
    Ok(())
}

/// Where to fetch a URL Document Server handed us: its path and query, on the configured
/// internal address. The host named in the callback is never contacted.
pub fn internal_url(config: &Config, url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| Error::BadRequest("callback url is not a URL".into()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::BadRequest(
            "callback url must be http or https".into(),
        ));
    }
    let public_prefix = match reqwest::Url::parse(&config.eurooffice_url) {
        Ok(public) => public.path().trim_end_matches('/').to_string(),
        Err(_) => config.eurooffice_url.trim_end_matches('/').to_string(),
    };
    let mut path = parsed.path();
    if !public_prefix.is_empty() && path.starts_with(&format!("{public_prefix}/")) {
        path = &path[public_prefix.len()..];
    }
    let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
    Ok(format!(
        "{}{path}{query}",
        config.eurooffice_internal_url.trim_end_matches('/')
    ))
}

/// Downloads from Document Server with a size cap and time limits.
async fn download(app: &App, url: &str, limit: u64) -> Result<Bytes> {
    let target = internal_url(&app.config, url)?;
    let unavailable = |e: &dyn std::fmt::Display| Error::unavailable("Document Server", e);
    let response = app
        .http
        .get(&target)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .map_err(|e| unavailable(&e))?;
    if !response.status().is_success() {
        return Err(unavailable(&format!(
            "download answered {}",
            response.status()
        )));
    }
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(Error::TooLarge(format!(
            "saved document larger than {limit} bytes"
        )));
    }
    let mut out = BytesMut::with_capacity(response.content_length().unwrap_or(0) as usize);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unavailable(&e))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Error::TooLarge(format!(
                "saved document larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}
