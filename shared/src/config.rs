//! Every environment variable the connector reads, in one typed place.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Which family of backends to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded defaults: directories, files, a local master key.
    Local,
    /// DynamoDB, S3, KMS; embedded implementations are refused.
    Aws,
}

/// Where a secret's value comes from. ARNs and parameter names are resolved once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Value(String),
    SecretsManager(String),
    Parameter(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Fs,
    S3,
}

/// One storage provider from `SKYE_PROVIDERS`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    pub id: String,
    pub kind: ProviderKind,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Keeps this provider's objects below `prefix/` (several providers may share a bucket).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Secrets Manager secret (ARN or name) holding `{"access_key_id","secret_access_key"}`.
    #[serde(default)]
    pub credentials_secret: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    /// Browser-facing Document Server base URL.
    pub eurooffice_url: String,
    /// Server-to-server Document Server base URL: the only origin save downloads go to.
    pub eurooffice_internal_url: String,
    /// How Document Server reaches the connector; `None` means "not set" (local mode derives it).
    pub eurooffice_callback_url: Option<String>,
    pub eurooffice_jwt_secret: Option<SecretSource>,
    pub eurooffice_jwt_header: String,
    /// Major version of Document Server (8 lacks `diagram` and xlsb editing).
    pub eurooffice_version: u32,
    pub data_dir: PathBuf,
    pub kms_key_id: Option<String>,
    pub files_table: Option<String>,
    pub sessions_table: Option<String>,
    pub temp_bucket: Option<String>,
    pub providers: Option<Vec<ProviderSpec>>,
    pub rs_data_shards: usize,
    pub rs_parity_shards: usize,
    pub min_write_shards: usize,
    pub user_jwt_secret: Option<SecretSource>,
    pub user_jwks_url: Option<String>,
    pub max_document_bytes: u64,
    pub session_idle_secs: u64,
    pub config_token_ttl_secs: u64,
    /// Base of `document.url` when the file endpoint has its own URL.
    pub file_url_base: Option<String>,
}

pub const DEFAULT_CALLBACK_URL: &str = "http://app:5000";
pub const MIN_SECRET_BYTES: usize = 32;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_vars(&vars)
    }

    /// Reads settings from any name → value map (tests feed the SAM template's environment here).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self> {
        let get = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let backend = match get("SKYE_BACKEND").as_deref() {
            Some("local") => Backend::Local,
            Some("aws") => Backend::Aws,
            Some(other) => {
                return Err(Error::Config(format!(
                    "SKYE_BACKEND must be `local` or `aws`, not `{other}`"
                )));
            }
            None if get("AWS_LAMBDA_FUNCTION_NAME").is_some() => Backend::Aws,
            None => Backend::Local,
        };
        let secret = |name: &str| -> Option<SecretSource> {
            if let Some(v) = get(name) {
                Some(SecretSource::Value(v))
            } else if let Some(arn) = get(&format!("{name}_SECRET_ARN")) {
                Some(SecretSource::SecretsManager(arn))
            } else {
                get(&format!("{name}_PARAMETER")).map(SecretSource::Parameter)
            }
        };
        let number = |name: &str, default: u64| -> Result<u64> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().map_err(|_| {
                    Error::Config(format!("{name} must be a whole number, not `{v}`"))
                }),
            }
        };
        let url = |name: &str| -> Result<Option<String>> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.starts_with("http://") || v.starts_with("https://") => {
                    Ok(Some(v.trim_end_matches('/').to_string()))
                }
                Some(v) => Err(Error::Config(format!(
                    "{name} must be an http:// or https:// URL, not `{v}`"
                ))),
            }
        };

        let rs_data_shards = number("SKYE_RS_DATA_SHARDS", 4)? as usize;
        let rs_parity_shards = number("SKYE_RS_PARITY_SHARDS", 2)? as usize;
        if rs_data_shards == 0 || rs_parity_shards == 0 || rs_data_shards + rs_parity_shards > 255 {
            return Err(Error::Config(
                "SKYE_RS_DATA_SHARDS and SKYE_RS_PARITY_SHARDS must be at least 1, together at most 255".into(),
            ));
        }
        let min_write_shards = number(
            "SKYE_MIN_WRITE_SHARDS",
            (rs_data_shards + 1).min(rs_data_shards + rs_parity_shards) as u64,
        )? as usize;
        if min_write_shards < rs_data_shards || min_write_shards > rs_data_shards + rs_parity_shards
        {
            return Err(Error::Config(format!(
                "SKYE_MIN_WRITE_SHARDS must lie between {rs_data_shards} and {}",
                rs_data_shards + rs_parity_shards
            )));
        }
        let providers = match get("SKYE_PROVIDERS") {
            None => None,
            Some(json) => {
                let list: Vec<ProviderSpec> = serde_json::from_str(&json).map_err(|e| {
                    Error::Config(format!("SKYE_PROVIDERS is not a valid provider list: {e}"))
                })?;
                validate_providers(&list)?;
                Some(list)
            }
        };
        let eurooffice_url = get("EUROOFFICE_URL").unwrap_or_else(|| "/ds".into());
        let config = Config {
            backend,
            eurooffice_url: eurooffice_url.trim_end_matches('/').to_string(),
            eurooffice_internal_url: url("EUROOFFICE_INTERNAL_URL")?
                .unwrap_or_else(|| "http://eurooffice".into()),
            eurooffice_callback_url: url("EUROOFFICE_CALLBACK_URL")?,
            eurooffice_jwt_secret: secret("EUROOFFICE_JWT_SECRET"),
            eurooffice_jwt_header: get("EUROOFFICE_JWT_HEADER")
                .unwrap_or_else(|| "Authorization".into()),
            eurooffice_version: number("EUROOFFICE_VERSION", 9)? as u32,
            data_dir: get("SKYE_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".skye")),
            kms_key_id: get("SKYE_KMS_KEY_ID"),
            files_table: get("SKYE_FILES_TABLE"),
            sessions_table: get("SKYE_SESSIONS_TABLE"),
            temp_bucket: get("SKYE_TEMP_BUCKET"),
            providers,
            rs_data_shards,
            rs_parity_shards,
            min_write_shards,
            user_jwt_secret: secret("SKYE_USER_JWT_SECRET"),
            user_jwks_url: url("SKYE_USER_JWKS_URL")?,
            max_document_bytes: number("SKYE_MAX_DOCUMENT_BYTES", 104_857_600)?,
            session_idle_secs: number("SKYE_SESSION_IDLE_SECS", 86_400)?,
            config_token_ttl_secs: number("SKYE_CONFIG_TOKEN_TTL_SECS", 3_600)?,
            file_url_base: url("SKYE_FILE_URL_BASE")?,
        };
        config.check_manifest_fits()?;
        if config.backend == Backend::Aws {
            config.require_aws()?;
        }
        Ok(config)
    }

    /// In `aws` mode every backend must be an AWS one: an embedded default is a start-up error.
    /// A version's manifest lives in one catalog item (DynamoDB: 400 KB at most) beside its
    /// history and the manifest of its changes: the piece digests of the largest document may
    /// take half of that.
    fn check_manifest_fits(&self) -> Result<()> {
        const DIGEST_BUDGET: u64 = 200_000;
        let stripe_bytes = self.rs_data_shards as u64 * crate::vault::DEFAULT_SEGMENT_BYTES as u64;
        let per_stripe = self.total_shards() as u64 * crate::vault::DIGEST_BYTES as u64 * 4 / 3;
        let largest = DIGEST_BUDGET / per_stripe * stripe_bytes;
        if self.max_document_bytes > largest {
            return Err(Error::Config(format!(
                "SKYE_MAX_DOCUMENT_BYTES: at most {largest} with {} + {} shards, or a version's manifest outgrows its catalog item",
                self.rs_data_shards, self.rs_parity_shards
            )));
        }
        Ok(())
    }

    fn require_aws(&self) -> Result<()> {
        let missing =
            |name: &str| Error::Config(format!("{name} is required when SKYE_BACKEND=aws"));
        if self.eurooffice_jwt_secret.is_none() {
            return Err(missing(
                "EUROOFFICE_JWT_SECRET (or EUROOFFICE_JWT_SECRET_SECRET_ARN / _PARAMETER)",
            ));
        }
        if self.kms_key_id.is_none() {
            return Err(missing("SKYE_KMS_KEY_ID"));
        }
        if self.files_table.is_none() {
            return Err(missing("SKYE_FILES_TABLE"));
        }
        if self.sessions_table.is_none() {
            return Err(missing("SKYE_SESSIONS_TABLE"));
        }
        if self.temp_bucket.is_none() {
            return Err(missing("SKYE_TEMP_BUCKET"));
        }
        match &self.providers {
            None => return Err(missing("SKYE_PROVIDERS")),
            Some(list) if list.iter().any(|p| p.kind == ProviderKind::Fs) => {
                return Err(Error::Config(
                    "SKYE_PROVIDERS: `fs` providers are embedded-only and refused when SKYE_BACKEND=aws".into(),
                ));
            }
            Some(_) => {}
        }
        if self.user_jwt_secret.is_none() && self.user_jwks_url.is_none() {
            tracing::warn!(
                "neither SKYE_USER_JWT_SECRET nor SKYE_USER_JWKS_URL is set: only API Gateway authorizer claims identify users"
            );
        }
        Ok(())
    }

    /// The callback base: explicit setting, else the given listen address (local), else the default.
    pub fn callback_base(&self) -> &str {
        self.eurooffice_callback_url
            .as_deref()
            .unwrap_or(DEFAULT_CALLBACK_URL)
    }

    /// Base of `document.url`.
    pub fn file_base(&self) -> &str {
        self.file_url_base
            .as_deref()
            .unwrap_or_else(|| self.callback_base())
    }

    pub fn api_js_url(&self) -> String {
        format!("{}/web-apps/apps/api/documents/api.js", self.eurooffice_url)
    }

    /// Total number of shards per version.
    pub fn total_shards(&self) -> usize {
        self.rs_data_shards + self.rs_parity_shards
    }
}

fn validate_providers(list: &[ProviderSpec]) -> Result<()> {
    if list.is_empty() {
        return Err(Error::Config(
            "SKYE_PROVIDERS must list at least one provider".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for p in list {
        if p.id.is_empty()
            || !p
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Config(format!(
                "SKYE_PROVIDERS: provider id `{}` must be non-empty letters, digits, - or _",
                p.id
            )));
        }
        if !seen.insert(&p.id) {
            return Err(Error::Config(format!(
                "SKYE_PROVIDERS: provider id `{}` appears twice",
                p.id
            )));
        }
        match p.kind {
            ProviderKind::S3 if p.bucket.is_none() => {
                return Err(Error::Config(format!(
                    "SKYE_PROVIDERS: s3 provider `{}` needs `bucket`",
                    p.id
                )));
            }
            ProviderKind::Fs if p.path.is_none() => {
                return Err(Error::Config(format!(
                    "SKYE_PROVIDERS: fs provider `{}` needs `path`",
                    p.id
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_environment_gives_local_defaults() {
        let c = Config::from_vars(&HashMap::new()).unwrap();
        assert_eq!(c.backend, Backend::Local);
        assert_eq!(c.eurooffice_url, "/ds");
        assert_eq!(c.eurooffice_internal_url, "http://eurooffice");
        assert_eq!(c.callback_base(), "http://app:5000");
        assert_eq!(
            (c.rs_data_shards, c.rs_parity_shards, c.min_write_shards),
            (4, 2, 5)
        );
        assert_eq!(c.max_document_bytes, 104_857_600);
        assert_eq!(c.api_js_url(), "/ds/web-apps/apps/api/documents/api.js");
    }

    #[test]
    fn lambda_defaults_to_aws_and_names_the_missing_variable() {
        let err = Config::from_vars(&vars(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ("EUROOFFICE_JWT_SECRET", "x"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SKYE_KMS_KEY_ID"), "{err}");
    }

    #[test]
    fn aws_mode_refuses_fs_providers() {
        let err = Config::from_vars(&vars(&[
            ("SKYE_BACKEND", "aws"),
            (
                "EUROOFFICE_JWT_SECRET_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:x",
            ),
            ("SKYE_KMS_KEY_ID", "k"),
            ("SKYE_FILES_TABLE", "f"),
            ("SKYE_SESSIONS_TABLE", "s"),
            ("SKYE_TEMP_BUCKET", "t"),
            ("SKYE_PROVIDERS", r#"[{"id":"a","kind":"fs","path":"/x"}]"#),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("embedded-only"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("SKYE_RS_DATA_SHARDS", "four"),
            ("SKYE_BACKEND", "cloud"),
            ("EUROOFFICE_INTERNAL_URL", "eurooffice"),
            ("SKYE_PROVIDERS", "[{]"),
            ("SKYE_MIN_WRITE_SHARDS", "9"),
            ("SKYE_MAX_DOCUMENT_BYTES", "10000000000"),
        ] {
            let err = Config::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn secret_sources_are_recognised() {
        let c =
            Config::from_vars(&vars(&[("SKYE_USER_JWT_SECRET_PARAMETER", "/skye/user")])).unwrap();
        assert_eq!(
            c.user_jwt_secret,
            Some(SecretSource::Parameter("/skye/user".into()))
        );
    }
}
