//! `GET /edit/{file_id}`: the page that hosts the Document Server editor. It asks the session
//! endpoint for a signed config (the user's `skye_token` cookie identifies them) and opens it.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, header};

use crate::app::App;
use crate::error::{Error, Result};

pub fn page(app: &App, file_id: &str) -> Result<Response> {
    if file_id.is_empty()
        || file_id.len() > 64
        || !file_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::NotFound("file"));
    }
    let nonce = crate::ids::new_id();
    let api_js = app.config.api_js_url();
    let html = PAGE
        .replace("{{API_JS}}", &html_escape(&api_js))
        .replace("{{FILE_ID}}", file_id)
        .replace("{{NONCE}}", &nonce);
    let docserver_origin = origin_of(&app.config.eurooffice_url).unwrap_or_else(|| "'self'".into());
    let mut response = Html(html).into_response();
    let csp = format!(
        "default-src 'self'; script-src 'nonce-{nonce}' {docserver_origin}; frame-src {docserver_origin}; \
         connect-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    Ok(response)
}

/// `https://docs.example.com/ds` → `https://docs.example.com`; a relative URL is our origin.
fn origin_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    Some(parsed.origin().ascii_serialization())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Editing — SkyeCONNEX</title>
<style>
  html, body { margin: 0; height: 100%; font-family: system-ui, sans-serif; }
  #editor { height: 100%; }
  #status { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center; color: #333; }
  #status.error { color: #a00; }
</style>
</head>
<body>
<div id="status">Opening the document…</div>
<div id="editor"></div>
<script nonce="{{NONCE}}" src="{{API_JS}}"></script>
<script nonce="{{NONCE}}">
(function () {
  "use strict";
  var fileId = "{{FILE_ID}}";
  var params = new URLSearchParams(location.search);
  var status = document.getElementById("status");
  var editor = null;

  function fail(message) {
    status.textContent = message;
    status.className = "error";
  }

  // Behind API Gateway's JWT authorizer the embedding app passes the user's token in the URL
  // fragment (never sent to any server); otherwise the skye_token cookie identifies the user.
  var bearer = new URLSearchParams(location.hash.slice(1)).get("token");
  if (bearer) history.replaceState(null, "", location.pathname + location.search);

  function openSession() {
    var body = { file_id: fileId };
    var headers = { "Content-Type": "application/json" };
    if (bearer) headers.Authorization = "Bearer " + bearer;
    if (params.get("mode") === "view") body.mode = "view";
    if (params.get("lang")) body.lang = params.get("lang");
    return fetch("/api/eurooffice/session", {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.message || ("HTTP " + r.status));
        return j;
      });
    });
  }

  function start(session) {
    if (typeof DocsAPI === "undefined") {
      fail("The document editor could not be loaded. Is Document Server reachable?");
      return;
    }
    var config = session.config;
    config.events = {
      onAppReady: function () { status.remove(); },
      // After a save Document Server needs a fresh config (new key) to keep going.
      onRequestRefreshFile: function () {
        openSession().then(function (s) { editor.refreshFile(s.config); }).catch(function (e) { fail(e.message); });
      },
      onError: function (e) { fail("Editor error: " + (e && e.data ? JSON.stringify(e.data) : "unknown")); }
    };
    editor = new DocsAPI.DocEditor("editor", config);
  }

  openSession().then(start).catch(function (e) { fail("Cannot open the document: " + e.message); });
})();
</script>
</body>
</html>
"#;
