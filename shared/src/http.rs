//! HTTP plumbing: the axum router over the handlers, and small request helpers.

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderMap;

use crate::app::App;
use crate::error::{Error, Result};
use crate::handlers;

pub const SESSION_PATH: &str = "/api/eurooffice/session";
pub const FILE_PATH: &str = "/api/eurooffice/file/{session_id}";
pub const CALLBACK_PATH: &str = "/api/eurooffice/callback/{session_id}";
pub const EDITOR_PATH: &str = "/edit/{file_id}";
pub const HEALTH_PATH: &str = "/api/eurooffice/health";

/// Largest request body any endpoint takes (callbacks with long histories included).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// One endpoint, as deployed: each is its own Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    CreateSession,
    ServeFile,
    Callback,
    EditorPage,
    Health,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::CreateSession,
        Endpoint::ServeFile,
        Endpoint::Callback,
        Endpoint::EditorPage,
        Endpoint::Health,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::CreateSession => SESSION_PATH,
            Endpoint::ServeFile => FILE_PATH,
            Endpoint::Callback => CALLBACK_PATH,
            Endpoint::EditorPage => EDITOR_PATH,
            Endpoint::Health => HEALTH_PATH,
        }
    }

    fn add_to(self, router: Router<App>) -> Router<App> {
        match self {
            Endpoint::CreateSession => router.route(
                SESSION_PATH,
                post(|State(app): State<App>, req: Request| async move {
                    handlers::session::create(&app, req).await
                }),
            ),
            Endpoint::ServeFile => router.route(
                FILE_PATH,
                get(
                    |State(app): State<App>, Path(id): Path<String>, req: Request| async move {
                        handlers::file::serve(&app, &id, req.headers()).await
                    },
                ),
            ),
            Endpoint::Callback => router.route(
                CALLBACK_PATH,
                post(
                    |State(app): State<App>, Path(id): Path<String>, req: Request| async move {
                        handlers::callback::handle(&app, &id, req).await
                    },
                ),
            ),
            Endpoint::EditorPage => router.route(
                EDITOR_PATH,
                get(
                    |State(app): State<App>, Path(id): Path<String>| async move {
                        handlers::editor::page(&app, &id)
                    },
                ),
            ),
            Endpoint::Health => router.route(
                HEALTH_PATH,
                get(|State(app): State<App>| async move { handlers::health::check(&app).await }),
            ),
        }
    }
}

/// Every endpoint on one router (what `skye serve` runs; mount it in any axum server).
pub fn router(app: App) -> Router {
    routes(app, &Endpoint::ALL)
}

/// The router of one function: only its endpoint answers.
pub fn routes(app: App, endpoints: &[Endpoint]) -> Router {
    let mut router = Router::new();
    for endpoint in endpoints {
        router = endpoint.add_to(router);
    }
    router
        .fallback(|| async { Error::NotFound("route").into_response() })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed.into_response() })
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

/// Reads a request body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Error::TooLarge(format!("request body larger than {limit} bytes")))
}

/// A header's value as text, if present and printable.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The value of one cookie.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A JSON response with a status.
pub fn json_response(status: http::StatusCode, value: &serde_json::Value) -> Response {
    (status, axum::Json(value)).into_response()
}
