//! `GET /api/eurooffice/health`: a real round trip to every backend, each with a timeout.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::app::App;
use crate::error::Result;
use crate::http::json_response;
use crate::storage::ObjectStore;
use crate::storage::objects::{collect_stream, once_stream};

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

async fn timed(
    name: String,
    kind: &str,
    required: bool,
    check: impl Future<Output = Result<()>>,
) -> Value {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.client_message()),
        Err(_) => Some("timed out".to_string()),
    };
    if let Some(e) = &error {
        tracing::warn!(backend = %name, error = %e, "health check failed");
    }
    json!({
        "name": name,
        "kind": kind,
        "required": required,
        "ok": error.is_none(),
        "error": error,
        "ms": started.elapsed().as_millis() as u64,
    })
}

/// Writes, reads back and deletes a small object.
async fn object_round_trip(store: &dyn ObjectStore) -> Result<()> {
    let key = format!("health/{}", crate::ids::random_hex(8));
    let probe = Bytes::from(crate::ids::random_hex(16));
    store.put(&key, once_stream(probe.clone())).await?;
    let back = collect_stream(store.get(&key, 0).await?, 1024).await;
    store.delete(&key).await?;
    if back? != probe {
        return Err(crate::Error::Integrity("read back different bytes".into()));
    }
    Ok(())
}

type Check<'a> = std::pin::Pin<Box<dyn Future<Output = Value> + Send + 'a>>;

pub async fn check(app: &App) -> Response {
    let keys = app.vault.keys().clone();
    let mut all: Vec<Check<'_>> = vec![
        Box::pin(timed(keys.describe(), "key_provider", true, async move {
            let context = [("purpose".to_string(), "health".to_string())].into();
            let key = keys.generate(&context).await?;
            if keys.unwrap(&key.wrapped, &context).await? != key.plaintext {
                return Err(crate::Error::Integrity(
                    "data key did not round-trip".into(),
                ));
            }
            Ok(())
        })),
        Box::pin(timed("catalog".into(), "catalog", true, app.catalog.ping())),
        Box::pin(timed(
            "sessions".into(),
            "session_store",
            true,
            app.sessions.ping(),
        )),
        Box::pin(timed(
            "temp".into(),
            "temp_store",
            true,
            object_round_trip(app.temp.as_ref()),
        )),
    ];
    for provider in app.vault.providers() {
        all.push(Box::pin(timed(
            provider.id().to_string(),
            "shard_provider",
            false,
            object_round_trip(provider.as_ref()),
        )));
    }
    let checks = futures::future::join_all(all).await;

    let healthy_providers = checks
        .iter()
        .filter(|c| c["kind"] == "shard_provider" && c["ok"] == true)
        .count();
    let required_down = checks
        .iter()
        .any(|c| c["required"] == true && c["ok"] == false);
    let total = app.vault.providers().len();
    // Writes need `min_write_shards` shards, and each provider takes at most this many.
    let per_provider = app.config.total_shards().div_ceil(total);
    let providers_needed = app.config.min_write_shards.div_ceil(per_provider);
    let providers_short = healthy_providers < providers_needed;
    let status = if required_down || providers_short {
        "down"
    } else if healthy_providers < total {
        "degraded"
    } else {
        "ok"
    };
    let code = if status == "down" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(
        code,
        &json!({
            "status": status,
            "backend": format!("{:?}", app.config.backend).to_lowercase(),
            "providers": { "healthy": healthy_providers, "total": total, "needed_for_writes": providers_needed },
            "backends": checks,
        }),
    )
}
