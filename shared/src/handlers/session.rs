//! `POST /api/eurooffice/session`: open (or join) the editing session of a file.

use axum::extract::Request;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::{cookie, header, json_response, read_body};
use crate::ids;
use crate::model::{Access, Session, SessionState};
use crate::protocol::editor::{self, Mode};
use crate::protocol::formats;
use crate::protocol::identity::User;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSession {
    file_id: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

const MAX_BODY: usize = 16 * 1024;

pub async fn create(app: &App, req: Request) -> Result<Response> {
    let (parts, body) = req.into_parts();
    let user = identify(app, &parts).await?;
    let body = read_body(body, MAX_BODY).await?;
    let input: CreateSession = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("invalid request body: {e}")))?;
    let requested = match input.mode.as_deref() {
        None | Some("edit") => Mode::Edit,
        Some("view") => Mode::View,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "mode must be `edit` or `view`, not `{other}`"
            )));
        }
    };
    let lang = match input.lang {
        Some(l) if l.len() <= 16 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => l,
        Some(_) => {
            return Err(Error::BadRequest(
                "lang must be a language tag such as `en` or `de-AT`".into(),
            ));
        }
        None => "en".to_string(),
    };

    // A missing file and a file the user may not see answer alike.
    let file = app
        .catalog
        .file(&input.file_id)
        .await?
        .ok_or(Error::NotFound("file"))?;
    let access = file.access_for(&user.id).ok_or(Error::NotFound("file"))?;
    let format = formats::require(&file.extension(), app.config.eurooffice_version)?;
    let mode = if access == Access::View || !format.editable {
        Mode::View
    } else {
        requested
    };

    let now = ids::now();
    let session_id = ids::new_id();
    let candidate = Session {
        session_id: session_id.clone(),
        file_id: file.file_id.clone(),
        version: file.head,
        key: ids::new_id(),
        document_url: editor::document_url(&app.config, &session_id),
        format: file.extension(),
        participants: [(user.id.clone(), user.name.clone())].into(),
        connected: Vec::new(),
        state: SessionState::Open,
        created: now,
        updated: now,
        expires_at: now + app.config.session_idle_secs as i64,
        last_error: None,
    };
    let mut session = app.sessions.open_or_join(candidate).await?;
    if session.participants.get(&user.id) != Some(&user.name) {
        session
            .participants
            .insert(user.id.clone(), user.name.clone());
        session.updated = now;
        app.sessions.update(&session).await?;
    }
    let opening = editor::Opening {
        session: &session,
        title: &file.title,
        format,
        user: &user,
        mode,
        lang: &lang,
    };
    let config = editor::build(&app.config, &app.docserver_secret, &opening)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "session_id": session.session_id,
            "config": config,
            "api_js_url": app.config.api_js_url(),
            "document_server_url": app.config.eurooffice_url,
        }),
    ))
}

/// Who is calling: API Gateway's verified JWT claims, else a bearer user token, else the
/// `skye_token` cookie (only for same-origin requests: no cross-site request forgery).
pub async fn identify(app: &App, req: &Parts) -> Result<User> {
    if let Some(user) = authorizer_user(req) {
        return Ok(user);
    }
    let headers = &req.headers;
    if let Some(value) = header(headers, "authorization") {
        let token = crate::protocol::jwt::bearer(value).ok_or(Error::Unauthenticated)?;
        return app.users.verify(token).await;
    }
    if let Some(token) = cookie(headers, "skye_token") {
        require_same_origin(headers)?;
        return app.users.verify(token).await;
    }
    Err(Error::Unauthenticated)
}

/// Claims of API Gateway's JWT authorizer, present only when the request came through it.
fn authorizer_user(req: &Parts) -> Option<User> {
    let lambda_http::request::RequestContext::ApiGatewayV2(ctx) =
        req.extensions
            .get::<lambda_http::request::RequestContext>()?
    else {
        return None;
    };
    let claims = &ctx.authorizer.as_ref()?.jwt.as_ref()?.claims;
    let id = claims.get("sub").filter(|s| !s.is_empty())?.clone();
    let name = claims.get("name").cloned().unwrap_or_else(|| id.clone());
    Some(User { id, name })
}

/// Browsers send `Sec-Fetch-Site` and `Origin`; a cookie-borne POST must come from our origin.
fn require_same_origin(headers: &HeaderMap) -> Result<()> {
    if let Some(site) = header(headers, "sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(Error::Forbidden("cross-site request refused".into())),
        };
    }
    let host = header(headers, "x-forwarded-host").or_else(|| header(headers, "host"));
    match (header(headers, "origin"), host) {
        (Some(origin), Some(host)) if origin.split_once("://").map(|(_, h)| h) == Some(host) => {
            Ok(())
        }
        _ => Err(Error::Forbidden("cross-site request refused".into())),
    }
}
