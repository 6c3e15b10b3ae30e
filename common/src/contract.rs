//! The names that tie a node's processes together, each defined once here:
//! environment variables ([`env`]), Postgres GUCs ([`guc`]), pgduck_server flags
//! ([`pgduck_flag`]), and the one parser of the shared object-storage environment
//! ([`StorageEnv`]) that pgduck_server, rest_catalog and `pg_lake_local` all read it
//! with, so a spelling means the same thing in every process.
//!
//! Rules every process follows through [`StorageEnv::from_lookup`]:
//! - An empty value is the same as an unset variable.
//! - Booleans take exactly Postgres' spellings: `on`/`off`, `true`/`false`, `yes`/`no`,
//!   `1`/`0`, in any case ([`parse_bool`]); anything else is an error naming the variable.
//! - `PG_LAKE_S3_URL_STYLE` is `path` or `vhost` (any case).
//! - TLS to S3: `PG_LAKE_S3_USE_SSL` if set, else the endpoint's scheme (`http://` no,
//!   `https://` yes), else yes. A variable that contradicts the endpoint's scheme is an error.
//! - A key id without its secret (or the reverse) is an error, not a silent fallback to
//!   the credential chain.

use std::fmt;

/// Environment variable names.
pub mod env {
    /// S3 keys (a Secret in pods, the caller's environment locally).
    pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
    pub const AWS_REGION: &str = "AWS_REGION";
    /// Read when `AWS_REGION` is unset, as the AWS SDKs do.
    pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
    /// `host[:port]` or `http(s)://host[:port]` of an S3-compatible store.
    pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    /// The S3-specific endpoint; wins over `AWS_ENDPOINT_URL`, as in the AWS SDKs.
    pub const AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
    /// Provider credential chain settings (IRSA, profiles): their presence alone asks for S3.
    pub const AWS_ROLE_ARN: &str = "AWS_ROLE_ARN";
    pub const AWS_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
    pub const AWS_PROFILE: &str = "AWS_PROFILE";
    /// `path` or `vhost`.
    pub const S3_URL_STYLE: &str = "PG_LAKE_S3_URL_STYLE";
    /// A boolean: TLS to the S3 endpoint.
    pub const S3_USE_SSL: &str = "PG_LAKE_S3_USE_SSL";
    /// GCS HMAC keys (GCS' S3-compatible XML API).
    pub const GCS_ACCESS_KEY_ID: &str = "GCS_ACCESS_KEY_ID";
    pub const GCS_SECRET_ACCESS_KEY: &str = "GCS_SECRET_ACCESS_KEY";
    /// Path of a GCS service-account key file (a mounted Secret in pods).
    pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
    /// A boolean: take GCS tokens from the metadata server (GKE Workload Identity).
    pub const GCS_METADATA_SERVER: &str = "PG_LAKE_GCS_METADATA_SERVER";
    /// `host[:port]` of the metadata server, when not the default.
    pub const GCE_METADATA_HOST: &str = "GCE_METADATA_HOST";
    /// `[http(s)://]host[:port]` of a stand-in GCS endpoint (emulators, tests).
    pub const STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";

    /// pgduck_server's TCP password (never argv).
    pub const PGDUCK_PASSWORD: &str = "PGDUCK_PASSWORD";

    pub const CATALOG_LISTEN: &str = "REST_CATALOG_LISTEN";
    /// Postgres URL of the catalog's database, without a password.
    pub const CATALOG_DATABASE_URL: &str = "REST_CATALOG_DATABASE_URL";
    pub const CATALOG_WAREHOUSE: &str = "REST_CATALOG_WAREHOUSE";
    pub const CATALOG_NAME: &str = "REST_CATALOG_NAME";
    /// How the REST catalog authenticates its clients: `none` or `token`.
    pub const CATALOG_AUTH: &str = "REST_CATALOG_AUTH";
    /// Bearer tokens the REST catalog accepts (comma-separated) in `token` mode.
    pub const CATALOG_TOKENS: &str = "REST_CATALOG_TOKENS";
    pub const CATALOG_LOG_FORMAT: &str = "REST_CATALOG_LOG_FORMAT";
    /// Password the REST catalog uses for its database user (libpq's own name).
    pub const PGPASSWORD: &str = "PGPASSWORD";
}

/// Postgres configuration parameters the wiring sets.
pub mod guc {
    pub const SHARED_PRELOAD_LIBRARIES: &str = "shared_preload_libraries";
    pub const UNIX_SOCKET_DIRECTORIES: &str = "unix_socket_directories";
    pub const PORT: &str = "port";
    /// libpq connection string of pgduck_server, read by the extension.
    pub const ENGINE_HOST: &str = "pg_lake_engine.host";
    pub const DEFAULT_LOCATION_PREFIX: &str = "pg_lake_iceberg.default_location_prefix";
}

/// pgduck_server's command-line flags (`--name=value`).
pub mod pgduck_flag {
    pub const UNIX_SOCKET_DIRECTORY: &str = "unix_socket_directory";
    pub const PORT: &str = "port";
    pub const MAX_CLIENTS: &str = "max_clients";
    pub const CACHE_DIR: &str = "cache_dir";
    pub const MEMORY_LIMIT: &str = "memory_limit";
    pub const THREADS: &str = "threads";
    pub const CACHE_SIZE: &str = "cache_size";
    pub const EXTENSIONS_DIR: &str = "extensions_dir";
    pub const PIDFILE: &str = "pidfile";
}

/// A setting that cannot be used, with the variable (or flag) it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    pub variable: String,
    pub message: String,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ContractError {}

fn error(variable: &str, message: impl Into<String>) -> ContractError {
    ContractError {
        variable: variable.to_owned(),
        message: message.into(),
    }
}

/// A boolean in exactly Postgres' spellings (case-insensitive): on/off, true/false,
/// yes/no, 1/0. `variable` names the setting in the error.
pub fn parse_bool(variable: &str, value: &str) -> Result<bool, ContractError> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(error(
            variable,
            format!("{value:?} is not a boolean; use on, off, true, false, yes, no, 1 or 0"),
        )),
    }
}

/// How S3 requests name the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlStyle {
    /// `https://endpoint/bucket/key` (S3-compatible stores).
    Path,
    /// `https://bucket.endpoint/key` (AWS).
    Vhost,
}

impl UrlStyle {
    pub fn parse(variable: &str, value: &str) -> Result<UrlStyle, ContractError> {
        match value.to_ascii_lowercase().as_str() {
            "path" => Ok(UrlStyle::Path),
            "vhost" => Ok(UrlStyle::Vhost),
            _ => Err(error(
                variable,
                format!("{value:?} is not a URL style; use path or vhost"),
            )),
        }
    }

    /// The spelling DuckDB's `URL_STYLE` and the environment use.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlStyle::Path => "path",
            UrlStyle::Vhost => "vhost",
        }
    }
}

/// `[http(s)://]host[:port][/]`: the host and, when a scheme is given, whether it is TLS.
fn parse_endpoint(variable: &str, value: &str) -> Result<(String, Option<bool>), ContractError> {
    let (host, tls) = match value.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => (rest, Some(false)),
            "https" => (rest, Some(true)),
            _ => {
                return Err(error(
                    variable,
                    format!("{value:?} has scheme {scheme:?}; use http://, https:// or host:port"),
                ))
            }
        },
        None => (value, None),
    };
    let host = host.trim_end_matches('/');
    if host.is_empty() {
        return Err(error(variable, format!("{value:?} names no host")));
    }
    Ok((host.to_owned(), tls))
}

/// A key id and its secret; `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub id: String,
    pub secret: String,
    /// S3 only: a temporary credential's session token.
    pub session_token: Option<String>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("id", &self.id)
            .field("secret", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// S3 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Env {
    pub region: Option<String>,
    /// host[:port], without scheme.
    pub endpoint: Option<String>,
    /// `None`: neither `PG_LAKE_S3_USE_SSL` nor the endpoint's scheme says (TLS then).
    pub use_ssl: Option<bool>,
    pub url_style: Option<UrlStyle>,
    /// `None`: the provider credential chain (IRSA, instance profile, ...).
    pub keys: Option<Keys>,
}

impl S3Env {
    pub fn tls(&self) -> bool {
        self.use_ssl.unwrap_or(true)
    }

    /// The endpoint as a URL, e.g. `http://127.0.0.1:5000`.
    pub fn endpoint_url(&self) -> Option<String> {
        let scheme = if self.tls() { "https" } else { "http" };
        self.endpoint
            .as_ref()
            .map(|host| format!("{scheme}://{host}"))
    }
}

/// GCS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcsEnv {
    pub hmac_keys: Option<Keys>,
    /// A stand-in endpoint: host[:port] and whether it speaks TLS (no, unless `https://`).
    pub emulator: Option<(String, bool)>,
    pub credentials_file: Option<String>,
    pub metadata_server: bool,
}

/// The shared object-storage environment, parsed once by every process the same way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageEnv {
    /// `None`: no S3 setting at all.
    pub s3: Option<S3Env>,
    pub gcs: GcsEnv,
}

impl StorageEnv {
    /// This process' environment.
    pub fn from_process_env() -> Result<StorageEnv, ContractError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<StorageEnv, ContractError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let s3_keys = key_pair(&get, env::AWS_ACCESS_KEY_ID, env::AWS_SECRET_ACCESS_KEY)?.map(
            |(id, secret)| Keys {
                id,
                secret,
                session_token: get(env::AWS_SESSION_TOKEN),
            },
        );
        let region = get(env::AWS_REGION).or_else(|| get(env::AWS_DEFAULT_REGION));
        let explicit_ssl = get(env::S3_USE_SSL)
            .map(|v| parse_bool(env::S3_USE_SSL, &v))
            .transpose()?;
        let endpoint_var = [env::AWS_ENDPOINT_URL_S3, env::AWS_ENDPOINT_URL]
            .into_iter()
            .find(|k| get(k).is_some());
        let (endpoint, scheme_ssl) = match endpoint_var {
            Some(var) => {
                let (host, tls) = parse_endpoint(var, &get(var).unwrap_or_default())?;
                (Some(host), tls)
            }
            None => (None, None),
        };
        if let (Some(explicit), Some(scheme), Some(var)) = (explicit_ssl, scheme_ssl, endpoint_var)
        {
            if explicit != scheme {
                return Err(error(
                    env::S3_USE_SSL,
                    format!(
                        "says {} but {var} has an {} URL; make them agree",
                        if explicit { "TLS" } else { "no TLS" },
                        if scheme { "https://" } else { "http://" }
                    ),
                ));
            }
        }
        let url_style = get(env::S3_URL_STYLE)
            .map(|v| UrlStyle::parse(env::S3_URL_STYLE, &v))
            .transpose()?;
        let use_ssl = explicit_ssl.or(scheme_ssl);
        let wanted = s3_keys.is_some()
            || region.is_some()
            || endpoint.is_some()
            || use_ssl.is_some()
            || url_style.is_some()
            || [
                env::AWS_ROLE_ARN,
                env::AWS_WEB_IDENTITY_TOKEN_FILE,
                env::AWS_PROFILE,
            ]
            .iter()
            .any(|k| get(k).is_some());
        let emulator = get(env::STORAGE_EMULATOR_HOST)
            .map(|v| parse_endpoint(env::STORAGE_EMULATOR_HOST, &v))
            .transpose()?
            .map(|(host, tls)| (host, tls.unwrap_or(false)));
        Ok(StorageEnv {
            s3: wanted.then_some(S3Env {
                region,
                endpoint,
                use_ssl,
                url_style,
                keys: s3_keys,
            }),
            gcs: GcsEnv {
                hmac_keys: key_pair(&get, env::GCS_ACCESS_KEY_ID, env::GCS_SECRET_ACCESS_KEY)?.map(
                    |(id, secret)| Keys {
                        id,
                        secret,
                        session_token: None,
                    },
                ),
                emulator,
                credentials_file: get(env::GOOGLE_APPLICATION_CREDENTIALS),
                metadata_server: get(env::GCS_METADATA_SERVER)
                    .map(|v| parse_bool(env::GCS_METADATA_SERVER, &v))
                    .transpose()?
                    .unwrap_or(false),
            },
        })
    }
}

/// Both halves of a key, or neither; one half alone is a mistake worth stopping for.
fn key_pair(
    get: &impl Fn(&str) -> Option<String>,
    id_var: &str,
    secret_var: &str,
) -> Result<Option<(String, String)>, ContractError> {
    match (get(id_var), get(secret_var)) {
        (Some(id), Some(secret)) => Ok(Some((id, secret))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(error(
            secret_var,
            format!("is not set but {id_var} is; set both, or neither"),
        )),
        (None, Some(_)) => Err(error(
            id_var,
            format!("is not set but {secret_var} is; set both, or neither"),
        )),
    }
}

/// The words of the protocol between the extension and pgduck_server, beyond plain SQL.
pub mod protocol {
    /// `TRANSMIT <query>`: the result streams back as COPY-out data in COPY text format.
    pub const TRANSMIT: &str = "TRANSMIT";
    /// pgduck_server's table function giving each file a pattern matches with its entity tag.
    pub const FILE_ETAGS: &str = "pg_lake_file_etags";
    /// pgduck_server's table function deleting one file (`lake_file.delete`).
    pub const DELETE_FILE: &str = "pg_lake_delete_file";
    /// pgduck_server's table function writing one whole file from base64 text (Iceberg
    /// metadata files, manifests and manifest lists the extension produces).
    pub const WRITE_FILE: &str = "pg_lake_write_file";
    /// pgduck_server's scalar function giving the nesting depth of a JSON text, counted
    /// without recursion: the extension checks a sample before DuckDB's type detection
    /// (which recurses once per level) reads it.
    pub const JSON_DEPTH: &str = "pg_lake_json_depth";
    /// `COPY pg_lake_upload FROM STDIN`: pgduck_server keeps what the client sends as a
    /// private file instead of loading it, and sets the session's DuckDB variable
    /// [`UPLOAD_VARIABLE`] to its path (`getvariable('pg_lake_upload')`). The extension
    /// reads it like any lake file (COPY FROM STDIN in Parquet or JSON) and deletes it
    /// with [`DELETE_FILE`]; a process's leftovers go at its next start.
    pub const UPLOAD_TARGET: &str = "pg_lake_upload";
    /// The DuckDB variable naming the file of the session's last upload.
    pub const UPLOAD_VARIABLE: &str = "pg_lake_upload";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<StorageEnv, ContractError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StorageEnv::from_lookup(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn booleans_take_exactly_postgres_spellings() {
        for v in ["on", "ON", "true", "True", "yes", "YES", "1"] {
            assert_eq!(parse_bool("X", v), Ok(true), "{v}");
        }
        for v in ["off", "Off", "false", "FALSE", "no", "No", "0"] {
            assert_eq!(parse_bool("X", v), Ok(false), "{v}");
        }
        for v in ["", "t", "f", "y", "2", "enable", " true", "truee"] {
            let e = parse_bool("PG_LAKE_S3_USE_SSL", v).unwrap_err();
            assert_eq!(e.variable, "PG_LAKE_S3_USE_SSL");
            assert!(e.to_string().contains("use on, off"), "{e}");
        }
    }

    #[test]
    fn use_ssl_wins_over_no_scheme_and_must_agree_with_one() {
        let s3 = |pairs| parse(pairs).unwrap().s3.unwrap();
        let plain = s3(&[
            ("AWS_ENDPOINT_URL", "127.0.0.1:9000"),
            ("PG_LAKE_S3_USE_SSL", "0"),
        ]);
        assert_eq!(
            plain.endpoint_url().as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let by_scheme = s3(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/")]);
        assert_eq!(by_scheme.endpoint.as_deref(), Some("127.0.0.1:9000"));
        assert!(!by_scheme.tls());
        assert!(s3(&[("AWS_ENDPOINT_URL", "minio:9000")]).tls());
        let e = parse(&[
            ("AWS_ENDPOINT_URL", "https://minio:9000"),
            ("PG_LAKE_S3_USE_SSL", "off"),
        ])
        .unwrap_err();
        assert_eq!(e.variable, "PG_LAKE_S3_USE_SSL");
        let e = parse(&[("AWS_ENDPOINT_URL", "ftp://minio")]).unwrap_err();
        assert_eq!(e.variable, "AWS_ENDPOINT_URL");
    }

    #[test]
    fn empty_is_unset_and_half_keys_are_errors() {
        assert_eq!(
            parse(&[("PG_LAKE_S3_USE_SSL", ""), ("AWS_REGION", "")]),
            Ok(StorageEnv::default())
        );
        let e = parse(&[("AWS_ACCESS_KEY_ID", "AKIA")]).unwrap_err();
        assert_eq!(e.variable, "AWS_SECRET_ACCESS_KEY");
        let e = parse(&[("GCS_SECRET_ACCESS_KEY", "x")]).unwrap_err();
        assert_eq!(e.variable, "GCS_ACCESS_KEY_ID");
    }

    #[test]
    fn url_style_and_metadata_server_are_checked() {
        let s3 = parse(&[("PG_LAKE_S3_URL_STYLE", "PATH")])
            .unwrap()
            .s3
            .unwrap();
        assert_eq!(s3.url_style, Some(UrlStyle::Path));
        assert_eq!(
            parse(&[("PG_LAKE_S3_URL_STYLE", "virtual")])
                .unwrap_err()
                .variable,
            "PG_LAKE_S3_URL_STYLE"
        );
        assert!(
            parse(&[("PG_LAKE_GCS_METADATA_SERVER", "Yes")])
                .unwrap()
                .gcs
                .metadata_server
        );
        assert_eq!(
            parse(&[("PG_LAKE_GCS_METADATA_SERVER", "maybe")])
                .unwrap_err()
                .variable,
            "PG_LAKE_GCS_METADATA_SERVER"
        );
    }

    #[test]
    fn keys_never_show_in_debug() {
        let env = parse(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "t0ken"),
        ])
        .unwrap();
        let shown = format!("{env:?}");
        assert!(shown.contains("AKIA") && !shown.contains("s3cr3t") && !shown.contains("t0ken"));
    }
}
