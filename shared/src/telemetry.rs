//! Logging set-up shared by every binary.

/// JSON lines for Lambda (CloudWatch), filtered by `RUST_LOG` (default `info`).
pub fn init_lambda() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,aws_config=warn".into());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .init();
}
