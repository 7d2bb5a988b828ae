//! Lambda function for one endpoint; all logic lives in the shared crate.

use eurooffice_connector::http::{Endpoint, routes};
use eurooffice_connector::{App, Config, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_lambda();
    // Built once per cold start, reused by every invocation.
    let app = App::from_config(Config::from_env()?).await?;
    lambda_http::run(routes(app, &[Endpoint::EditorPage])).await
}
