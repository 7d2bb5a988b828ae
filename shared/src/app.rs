//! The dependencies every handler needs, built once per process (once per Lambda cold start).

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use crate::config::{Backend, Config, ProviderKind, ProviderSpec, SecretSource};
use crate::error::{Error, Result};
use crate::keys::{KeyProvider, KmsKeyProvider, LocalKeyProvider};
use crate::protocol::identity::UserAuth;
use crate::storage::{
    Catalog, DirStore, DynamoCatalog, DynamoSessionStore, FileCatalog, FileSessionStore,
    ObjectStore, S3Store, SessionStore,
};
use crate::vault::{Vault, VaultSettings};

/// Cheap to clone: every handler gets one.
#[derive(Clone)]
pub struct App(Arc<Deps>);

pub struct Deps {
    pub config: Config,
    pub vault: Vault,
    pub catalog: Arc<dyn Catalog>,
    pub sessions: Arc<dyn SessionStore>,
    pub temp: Arc<dyn ObjectStore>,
    /// Shared secret with Document Server (HS256).
    pub docserver_secret: String,
    pub users: Arc<UserAuth>,
    /// Client for downloads from Document Server: no redirects, bounded time.
    pub http: reqwest::Client,
}

impl Deref for App {
    type Target = Deps;
    fn deref(&self) -> &Deps {
        &self.0
    }
}

/// Names of the files a local data directory holds.
pub mod local_files {
    pub const MASTER_KEY: &str = "master.key";
    pub const DOCSERVER_SECRET: &str = "eurooffice-jwt-secret";
    pub const USER_SECRET: &str = "user-jwt-secret";
    pub const CATALOG: &str = "catalog.json";
    pub const SESSIONS: &str = "sessions.json";
    pub const TEMP: &str = "temp";
    pub const PROVIDERS: &str = "providers";
}

/// How many directory providers the embedded default sets up.
pub const DEFAULT_LOCAL_PROVIDERS: usize = 6;

impl App {
    pub fn from_deps(deps: Deps) -> Self {
        App(Arc::new(deps))
    }

    /// Builds every dependency the configuration names. In `aws` mode only AWS backends exist;
    /// in `local` mode each AWS setting that is present is honoured and the rest is embedded.
    pub async fn from_config(config: Config) -> Result<Self> {
        let aws = if config.backend == Backend::Aws
            || config.kms_key_id.is_some()
            || config.files_table.is_some()
            || config.temp_bucket.is_some()
            || config
                .providers
                .iter()
                .flatten()
                .any(|p| p.kind == ProviderKind::S3)
            || [&config.eurooffice_jwt_secret, &config.user_jwt_secret]
                .into_iter()
                .any(|s| {
                    matches!(
                        s,
                        Some(SecretSource::SecretsManager(_) | SecretSource::Parameter(_))
                    )
                }) {
            Some(aws_config::defaults(BehaviorVersion::latest()).load().await)
        } else {
            None
        };
        let local = config.backend == Backend::Local;
        let data_dir = config.data_dir.clone();
        if local {
            crate::storage::objects::create_private_dir(&data_dir)?;
        }

        let docserver_secret = match &config.eurooffice_jwt_secret {
            Some(source) => resolve_secret(aws.as_ref(), source, "EUROOFFICE_JWT_SECRET").await?,
            None if local => local_secret(&data_dir.join(local_files::DOCSERVER_SECRET))?,
            None => return Err(Error::Config("EUROOFFICE_JWT_SECRET is required".into())),
        };
        check_secret_len(&docserver_secret, "EUROOFFICE_JWT_SECRET")?;
        let user_secret = match &config.user_jwt_secret {
            Some(source) => {
                Some(resolve_secret(aws.as_ref(), source, "SKYE_USER_JWT_SECRET").await?)
            }
            None if local => Some(local_secret(&data_dir.join(local_files::USER_SECRET))?),
            None => None,
        };
        if let Some(secret) = &user_secret {
            check_secret_len(secret, "SKYE_USER_JWT_SECRET")?;
        }

        let keys: Arc<dyn KeyProvider> = match (&config.kms_key_id, &aws) {
            (Some(key_id), Some(sdk)) => {
                Arc::new(KmsKeyProvider::new(aws_sdk_kms::Client::new(sdk), key_id))
            }
            _ => Arc::new(LocalKeyProvider::open(
                &data_dir.join(local_files::MASTER_KEY),
            )?),
        };
        let specs = match &config.providers {
            Some(list) => list.clone(),
            None => default_local_providers(&data_dir),
        };
        let mut providers: Vec<Arc<dyn ObjectStore>> = Vec::with_capacity(specs.len());
        for spec in &specs {
            providers.push(build_provider(aws.as_ref(), spec).await?);
        }
        let settings = VaultSettings {
            data_shards: config.rs_data_shards,
            parity_shards: config.rs_parity_shards,
            min_write_shards: config.min_write_shards,
            ..VaultSettings::default()
        };
        let vault = Vault::new(keys, providers, settings)?;

        let (catalog, sessions): (Arc<dyn Catalog>, Arc<dyn SessionStore>) =
            match (&aws, &config.files_table, &config.sessions_table) {
                (Some(sdk), Some(files), Some(sessions)) => {
                    let client = aws_sdk_dynamodb::Client::new(sdk);
                    (
                        Arc::new(DynamoCatalog::new(client.clone(), files)),
                        Arc::new(DynamoSessionStore::new(client, sessions)),
                    )
                }
                (_, None, None) => (
                    Arc::new(FileCatalog::open(data_dir.join(local_files::CATALOG))?),
                    Arc::new(FileSessionStore::open(
                        data_dir.join(local_files::SESSIONS),
                    )?),
                ),
                _ => {
                    return Err(Error::Config(
                        "SKYE_FILES_TABLE and SKYE_SESSIONS_TABLE must be set together".into(),
                    ));
                }
            };
        let temp: Arc<dyn ObjectStore> = match (&aws, &config.temp_bucket) {
            (Some(sdk), Some(bucket)) => Arc::new(S3Store::new(
                "temp",
                s3_client(sdk, None, None, None),
                bucket,
            )),
            _ => Arc::new(DirStore::open("temp", data_dir.join(local_files::TEMP))?),
        };
        let users = Arc::new(UserAuth::new(user_secret, config.user_jwks_url.clone()));
        let http = reqwest::Client::builder()
            // Same-origin redirects only: a download must never be steered to another host.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same = attempt.previous().first().map(|first| first.origin())
                    == Some(attempt.url().origin());
                if same && attempt.previous().len() < 5 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(App(Arc::new(Deps {
            config,
            vault,
            catalog,
            sessions,
            temp,
            docserver_secret,
            users,
            http,
        })))
    }
}

fn default_local_providers(data_dir: &Path) -> Vec<ProviderSpec> {
    (1..=DEFAULT_LOCAL_PROVIDERS)
        .map(|i| ProviderSpec {
            id: format!("local-{i}"),
            kind: ProviderKind::Fs,
            bucket: None,
            path: Some(
                data_dir
                    .join(local_files::PROVIDERS)
                    .join(format!("local-{i}")),
            ),
            endpoint: None,
            region: None,
            prefix: None,
            credentials_secret: None,
        })
        .collect()
}

fn check_secret_len(secret: &str, name: &str) -> Result<()> {
    if secret.len() < crate::config::MIN_SECRET_BYTES {
        return Err(Error::Config(format!(
            "{name} must be at least {} bytes long",
            crate::config::MIN_SECRET_BYTES
        )));
    }
    Ok(())
}

/// Reads a generated secret from the data directory, creating it (mode 0600) on first run.
pub fn local_secret(path: &Path) -> Result<String> {
    let bytes = crate::keys::read_or_create_secret_file(path, 32)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// An S3 client for one endpoint: path-style (emulators and most S3-compatible stores need
/// it), checksums only where the API requires them (S3-compatible stores differ on the rest).
pub fn s3_client(
    sdk: &SdkConfig,
    endpoint: Option<&str>,
    region: Option<&str>,
    credentials: Option<Credentials>,
) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if let Some(region) = region {
        builder = builder.region(Region::new(region.to_string()));
    }
    if let Some(credentials) = credentials {
        builder = builder.credentials_provider(credentials);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

async fn build_provider(
    aws: Option<&SdkConfig>,
    spec: &ProviderSpec,
) -> Result<Arc<dyn ObjectStore>> {
    match spec.kind {
        ProviderKind::Fs => {
            let path = spec
                .path
                .as_ref()
                .ok_or_else(|| Error::Config(format!("provider {} needs path", spec.id)))?;
            Ok(Arc::new(DirStore::open(&spec.id, path)?))
        }
        ProviderKind::S3 => {
            let sdk = aws.ok_or_else(|| Error::internal("AWS configuration not loaded"))?;
            let bucket = spec
                .bucket
                .as_ref()
                .ok_or_else(|| Error::Config(format!("provider {} needs bucket", spec.id)))?;
            let credentials = match &spec.credentials_secret {
                None => None,
                Some(secret) => {
                    let json = resolve_secret(
                        Some(sdk),
                        &SecretSource::SecretsManager(secret.clone()),
                        "credentials_secret",
                    )
                    .await?;
                    #[derive(serde::Deserialize)]
                    struct Keys {
                        access_key_id: String,
                        secret_access_key: String,
                    }
                    let keys: Keys = serde_json::from_str(&json).map_err(|_| {
                        Error::Config(format!(
                            "SKYE_PROVIDERS: credentials_secret of `{}` must hold {{\"access_key_id\",\"secret_access_key\"}}",
                            spec.id
                        ))
                    })?;
                    Some(Credentials::new(
                        keys.access_key_id,
                        keys.secret_access_key,
                        None,
                        None,
                        "skye-provider",
                    ))
                }
            };
            let client = s3_client(
                sdk,
                spec.endpoint.as_deref(),
                spec.region.as_deref(),
                credentials,
            );
            Ok(Arc::new(
                S3Store::new(&spec.id, client, bucket)
                    .with_prefix(spec.prefix.as_deref().unwrap_or("")),
            ))
        }
    }
}

/// Fetches a secret's value once (per cold start).
async fn resolve_secret(
    aws: Option<&SdkConfig>,
    source: &SecretSource,
    name: &str,
) -> Result<String> {
    let need_aws = || Error::Config(format!("{name}: secret references need AWS access"));
    match source {
        SecretSource::Value(v) => Ok(v.clone()),
        SecretSource::SecretsManager(arn) => {
            let sdk = aws.ok_or_else(need_aws)?;
            let out = aws_sdk_secretsmanager::Client::new(sdk)
                .get_secret_value()
                .secret_id(arn)
                .send()
                .await
                .map_err(|e| {
                    Error::Config(format!(
                        "{name}: reading the secret failed: {}",
                        aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                    ))
                })?;
            out.secret_string()
                .map(str::to_string)
                .ok_or_else(|| Error::Config(format!("{name}: the secret holds no string")))
        }
        SecretSource::Parameter(parameter) => {
            let sdk = aws.ok_or_else(need_aws)?;
            let out = aws_sdk_ssm::Client::new(sdk)
                .get_parameter()
                .name(parameter)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| {
                    Error::Config(format!(
                        "{name}: reading the parameter failed: {}",
                        aws_sdk_ssm::error::DisplayErrorContext(e)
                    ))
                })?;
            out.parameter()
                .and_then(|p| p.value())
                .map(str::to_string)
                .ok_or_else(|| Error::Config(format!("{name}: the parameter holds no value")))
        }
    }
}
