//! Command-line flags (each with its environment variable) and the secret
//! settings that are read from the environment or files only, never from
//! process arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pg_lake_common::contract::{env, parse_bool, StorageEnv, UrlStyle};

use crate::auth::{Auth, AuthMode, OAuthClient};
use crate::error::{Error, Result};
use crate::warehouse::StorageSettings;
use pg_lake_common::wiring::ObjectStore as StoreWiring;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Iceberg REST catalog whose state lives in the cluster's Postgres.
///
/// Secrets: the database password comes from PGPASSWORD; static bearer tokens
/// from REST_CATALOG_TOKENS (comma-separated) or --tokens-file (one a line);
/// OAuth2 clients from REST_CATALOG_OAUTH_CLIENTS (id:secret,...) or
/// --oauth-clients-file (id:secret a line); the token signing key from
/// REST_CATALOG_TOKEN_SIGNING_KEY or --token-signing-key-file; S3 keys from
/// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
#[derive(Debug, Clone, Parser)]
#[command(name = "rest_catalog", version)]
pub struct Args {
    /// Address to serve HTTP on.
    #[arg(long, env = "REST_CATALOG_LISTEN", default_value = "127.0.0.1:8181")]
    pub listen: SocketAddr,
    /// Postgres connection string of the database holding the catalog (no password in it).
    #[arg(long, env = "REST_CATALOG_DATABASE_URL")]
    pub database_url: String,
    /// Warehouse URI: s3://bucket/prefix, gs://bucket/prefix or an absolute directory.
    #[arg(long, env = "REST_CATALOG_WAREHOUSE")]
    pub warehouse: String,
    /// Catalog name: the catalog_name of this catalog's rows.
    #[arg(long, env = "REST_CATALOG_NAME", default_value = pg_lake_common::wiring::DEFAULT_CATALOG_NAME)]
    pub catalog_name: String,
    /// Optional `{prefix}` path segment (advertised to clients in /v1/config).
    #[arg(long, env = "REST_CATALOG_PREFIX")]
    pub prefix: Option<String>,
    /// Authentication; `none` must be chosen explicitly.
    #[arg(long, env = "REST_CATALOG_AUTH", value_enum)]
    pub auth: AuthMode,
    #[arg(long, env = "REST_CATALOG_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    #[arg(long, env = "REST_CATALOG_OAUTH_CLIENTS_FILE")]
    pub oauth_clients_file: Option<PathBuf>,
    #[arg(long, env = "REST_CATALOG_TOKEN_SIGNING_KEY_FILE")]
    pub token_signing_key_file: Option<PathBuf>,
    /// Lifetime of tokens issued by /v1/oauth/tokens, in seconds.
    #[arg(long, env = "REST_CATALOG_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub token_ttl_secs: u64,
    // The S3 settings below are read from the shared environment (AWS_REGION,
    // AWS_ENDPOINT_URL, PG_LAKE_S3_URL_STYLE, PG_LAKE_S3_USE_SSL) by the parser every
    // pg_lake process uses (`pg_lake_common::contract`); a flag overrides its variable.
    #[arg(long)]
    pub s3_region: Option<String>,
    /// URL of an S3-compatible endpoint.
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// `path` or `vhost`.
    #[arg(long, value_parser = |v: &str| UrlStyle::parse("--s3-url-style", v).map(|s| s.as_str()))]
    pub s3_url_style: Option<&'static str>,
    /// on/off, true/false, yes/no, 1/0.
    #[arg(long, action = clap::ArgAction::Set, value_parser = |v: &str| parse_bool("--s3-use-ssl", v))]
    pub s3_use_ssl: Option<bool>,
    /// Return the catalog's S3 keys to clients with each table.
    #[arg(long, env = "REST_CATALOG_VEND_CREDENTIALS")]
    pub vend_credentials: bool,
    /// Largest accepted request body.
    #[arg(long, env = "REST_CATALOG_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    #[arg(long, env = "REST_CATALOG_MAX_DB_CONNECTIONS", default_value_t = 16)]
    pub max_db_connections: usize,
    /// How long to wait for the database at start-up, in seconds.
    #[arg(long, env = "REST_CATALOG_DATABASE_WAIT_SECS", default_value_t = 60)]
    pub database_wait_secs: u64,
    /// Server-side re-tries of a commit that lost its compare-and-swap (its
    /// requirements are checked again against the new metadata).
    #[arg(long, env = "REST_CATALOG_COMMIT_RETRIES", default_value_t = 4)]
    pub commit_retries: u32,
    /// How long a response is kept for replay under its Idempotency-Key, in seconds.
    #[arg(
        long,
        env = "REST_CATALOG_IDEMPOTENCY_LIFETIME_SECS",
        default_value_t = 3600
    )]
    pub idempotency_lifetime_secs: u64,
    #[arg(
        long,
        env = "REST_CATALOG_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

fn read_secret_file(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

/// Non-empty lines of a file, or comma-separated items of an environment variable.
fn secret_list(env: &str, file: Option<&PathBuf>) -> Result<Vec<String>> {
    let mut items: Vec<String> = std::env::var(env)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(path) = file {
        items.extend(
            read_secret_file(path)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    Ok(items)
}

impl Args {
    /// The warehouse and S3 settings: the shared environment with the flags over it.
    pub fn storage(&self) -> Result<StorageSettings> {
        let use_ssl = self.s3_use_ssl.map(|b| b.to_string());
        let flags = [
            (env::AWS_REGION, self.s3_region.clone()),
            (env::AWS_ENDPOINT_URL_S3, self.s3_endpoint.clone()),
            (env::S3_URL_STYLE, self.s3_url_style.map(str::to_owned)),
            (env::S3_USE_SSL, use_ssl),
        ];
        let storage = StorageEnv::from_lookup(|name| {
            match flags.iter().find(|(flag_var, _)| *flag_var == name) {
                Some((_, Some(value))) => Some(value.clone()),
                _ => std::env::var(name).ok(),
            }
        })
        .map_err(|e| Error::Config(e.to_string()))?;
        let s3 = storage.s3.as_ref();
        Ok(StorageSettings {
            store: StoreWiring {
                warehouse: self.warehouse.clone(),
                s3_region: s3.and_then(|s| s.region.clone()),
                s3_endpoint: s3.and_then(|s| s.endpoint_url()),
                s3_path_style: s3.is_some_and(|s| s.url_style == Some(UrlStyle::Path)),
                s3_use_ssl: s3.is_none_or(|s| s.tls()),
            },
            vend_credentials: self.vend_credentials,
        })
    }

    pub fn auth(&self) -> Result<Auth> {
        let tokens = secret_list("REST_CATALOG_TOKENS", self.tokens_file.as_ref())?;
        let clients = secret_list(
            "REST_CATALOG_OAUTH_CLIENTS",
            self.oauth_clients_file.as_ref(),
        )?
        .iter()
        .map(|entry| {
            entry
                .split_once(':')
                .map(|(id, secret)| OAuthClient::new(id.to_string(), secret))
                .ok_or_else(|| {
                    Error::Config("OAuth clients are written client_id:client_secret".into())
                })
        })
        .collect::<Result<Vec<_>>>()?;
        let signing_key = match (
            std::env::var("REST_CATALOG_TOKEN_SIGNING_KEY"),
            &self.token_signing_key_file,
        ) {
            (Ok(key), _) => key.into_bytes(),
            (Err(_), Some(path)) => read_secret_file(path)?.trim().as_bytes().to_vec(),
            (Err(_), None) => {
                if !clients.is_empty() {
                    tracing::warn!(
                        "no token signing key configured: issued tokens are valid only until this process exits \
                         and only on this replica"
                    );
                }
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        Auth::new(
            self.auth,
            &tokens,
            clients,
            signing_key,
            Duration::from_secs(self.token_ttl_secs),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> std::result::Result<Args, clap::Error> {
        let mut argv = vec!["rest_catalog", "--database-url", "postgres://x@h/db"];
        argv.extend(["--warehouse", "s3://b/w", "--auth", "none"]);
        argv.extend(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn s3_flags_take_the_spellings_every_process_takes() {
        for off in ["0", "off", "FALSE", "no"] {
            let a = args(&["--s3-endpoint", "127.0.0.1:9000", "--s3-use-ssl", off]).unwrap();
            let s = a.storage().unwrap();
            assert!(!s.store.s3_use_ssl, "{off}");
            assert_eq!(
                s.store.s3_endpoint.as_deref(),
                Some("http://127.0.0.1:9000")
            );
        }
        let s = args(&[
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-url-style",
            "PATH",
        ])
        .unwrap()
        .storage()
        .unwrap();
        assert!(
            !s.store.s3_use_ssl && s.store.s3_path_style,
            "TLS follows the endpoint's scheme"
        );
        let e = args(&["--s3-use-ssl", "maybe"]).unwrap_err().to_string();
        assert!(
            e.contains("--s3-use-ssl") && e.contains("use on, off"),
            "{e}"
        );
        let e = args(&["--s3-endpoint", "https://h", "--s3-use-ssl", "off"])
            .unwrap()
            .storage()
            .unwrap_err()
            .to_string();
        assert!(e.contains("PG_LAKE_S3_USE_SSL"), "{e}");
    }
}
