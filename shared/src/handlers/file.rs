//! `GET /api/eurooffice/file/{session_id}`: Document Server downloads the document, streamed
//! straight out of the vault (decrypted in memory, never written anywhere).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::header as header_value;
use crate::protocol::jwt;

pub async fn serve(app: &App, session_id: &str, headers: &HeaderMap) -> Result<Response> {
    let raw =
        header_value(headers, &app.config.eurooffice_jwt_header).ok_or(Error::Unauthenticated)?;
    let token = jwt::bearer(raw).ok_or(Error::Unauthenticated)?;
    let claims = jwt::unwrap_payload(jwt::verify(&app.docserver_secret, token)?);
    let mut session = app
        .sessions
        .get(session_id)
        .await?
        .ok_or(Error::NotFound("session"))?;
    let now = crate::ids::now();
    if !session.is_open(now) {
        return Err(Error::NotFound("session"));
    }
    // The token must name exactly this session's document URL: a token for another file's
    // URL opens nothing here.
    if claims.get("url").and_then(|u| u.as_str()) != Some(session.document_url.as_str()) {
        return Err(Error::Forbidden(
            "token was issued for another document".into(),
        ));
    }
    let (version, stream) =
        crate::library::open_version(app, &session.file_id, Some(session.version)).await?;
    session.expires_at = now + app.config.session_idle_secs as i64;
    session.updated = now;
    if let Err(e) = app.sessions.update(&session).await {
        tracing::warn!(error = %e, "could not renew session expiry");
    }
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(version.size));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&version.format)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub fn content_type(extension: &str) -> &'static str {
    match extension {
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "doc" => "application/msword",
        "xls" => "application/vnd.ms-excel",
        "ppt" => "application/vnd.ms-powerpoint",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "odp" => "application/vnd.oasis.opendocument.presentation",
        "pdf" => "application/pdf",
        "rtf" => "application/rtf",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}
