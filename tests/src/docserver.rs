//! A Document Server simulator: downloads `document.url` with a header token exactly as
//! Document Server does, serves edited documents from its "cache", and posts callbacks with
//! body and header tokens. Downloads of edited files are served on the *internal* address; the
//! URLs it puts in callbacks name a different, public-looking host that records any contact.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use eurooffice_connector::App;

type Files = Arc<Mutex<HashMap<String, Bytes>>>;

pub struct DocServerSim {
    secret: String,
    /// Where the connector must fetch edited files (EUROOFFICE_INTERNAL_URL).
    pub internal: SocketAddr,
    /// The host named in callback URLs; any connection to it is counted.
    pub public: SocketAddr,
    pub public_hits: Arc<AtomicUsize>,
    files: Files,
    client: reqwest::Client,
}

async fn serve_cache(
    State(files): State<Files>,
    Path(name): Path<String>,
) -> Result<Bytes, StatusCode> {
    files
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&name)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

impl DocServerSim {
    pub async fn start(secret: &str) -> Self {
        let files: Files = Arc::default();
        let internal = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let internal_addr = internal.local_addr().expect("addr");
        let router = Router::new()
            .route("/cache/files/{name}", get(serve_cache))
            .with_state(files.clone());
        tokio::spawn(async move {
            let _ = axum::serve(internal, router).await;
        });
        let public = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let public_addr = public.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((_socket, _)) = public.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            secret: secret.to_string(),
            internal: internal_addr,
            public: public_addr,
            public_hits: hits,
            files,
            client: reqwest::Client::new(),
        }
    }

    pub fn internal_url(&self) -> String {
        format!("http://{}", self.internal)
    }

    /// Puts an edited document in the cache; returns the URL a callback would carry, on the
    /// public host (not the internal address).
    pub fn publish(&self, bytes: impl Into<Bytes>, ext: &str) -> String {
        let name = format!("output-{}.{ext}", eurooffice_connector::ids::random_hex(6));
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), bytes.into());
        format!(
            "http://{}/cache/files/{name}?md5=abc&expires=1999999999&filename=output.{ext}",
            self.public
        )
    }

    /// Empties the cache, as Document Server does once it considers a file handled.
    pub fn forget_all(&self) {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn token(&self, claims: &Value) -> String {
        eurooffice_connector::protocol::jwt::sign(&self.secret, claims, 300).expect("sign")
    }

    /// GET `url` as Document Server does: `Authorization: Bearer` with `{"payload":{"url"}}`.
    pub async fn download(&self, url: &str) -> (StatusCode, Bytes) {
        let token = self.token(&json!({"payload": {"url": url}}));
        self.download_with(url, &format!("Bearer {token}")).await
    }

    pub async fn download_with(&self, url: &str, authorization: &str) -> (StatusCode, Bytes) {
        let response = self
            .client
            .get(url)
            .header("Authorization", authorization)
            .send()
            .await
            .expect("download");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        (status, response.bytes().await.unwrap_or_default())
    }

    /// POSTs a callback with the body token and the header token, as Document Server does.
    pub async fn callback(&self, callback_url: &str, body: Value) -> (StatusCode, Value) {
        let header = self.token(&json!({"payload": body}));
        let mut with_token = body.clone();
        with_token["token"] = Value::String(self.token(&body));
        self.post(callback_url, &with_token, Some(&format!("Bearer {header}")))
            .await
    }

    pub async fn post(
        &self,
        url: &str,
        body: &Value,
        authorization: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(url).json(body);
        if let Some(auth) = authorization {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.expect("callback");
        let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Serves the connector's router on a loopback port; returns its base URL.
pub async fn serve_connector(listener: tokio::net::TcpListener, app: App) {
    tokio::spawn(async move {
        let _ = axum::serve(listener, eurooffice_connector::http::router(app)).await;
    });
}
