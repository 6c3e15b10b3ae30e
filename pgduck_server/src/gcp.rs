//! GCS access tokens for DuckDB, which itself speaks only HMAC keys or a bearer token.
//!
//! A service-account key (the JSON file `GOOGLE_APPLICATION_CREDENTIALS` names, as the
//! operator mounts it from a Secret) is exchanged for an OAuth2 access token with a
//! signed JWT (RFC 7523); on GKE with Workload Identity the metadata server hands one
//! out. The token becomes the `pg_lake_gcs` DuckDB secret and is renewed before it
//! expires. Neither the key nor a token is ever logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;

use tracing::{info, warn};

use crate::credentials::{SecretStatement, StorageEnv};
use pg_lake_common::sql::quote_literal as literal;

use crate::engine::Engine;
use crate::error::ServerError;

/// Environment variable naming a service-account key file (Google's convention).
pub const KEY_FILE_ENV: &str = pg_lake_common::contract::env::GOOGLE_APPLICATION_CREDENTIALS;
/// A boolean: take tokens from the metadata server (GKE Workload Identity).
pub const METADATA_ENV: &str = pg_lake_common::contract::env::GCS_METADATA_SERVER;
/// The metadata server's host, as Google's client libraries read it.
pub const METADATA_HOST_ENV: &str = pg_lake_common::contract::env::GCE_METADATA_HOST;
/// Read and write objects: what COPY TO and Iceberg writes need.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// How long a request to the token endpoint may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest wait between two token requests, whatever lifetime a server claims.
const MIN_RENEWAL: u64 = 5;
/// How soon a failed token request is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Installs a GCS token secret when the environment configures a token source, and keeps
/// renewing it in the background. A key file that is unusable stops start-up; a token
/// endpoint that fails is logged and retried, so the server still serves everything else.
pub fn start_token_renewal(engine: &Arc<Engine>) -> Result<(), ServerError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(source) = TokenSource::from_env(env).map_err(ServerError::Config)? else {
        return Ok(());
    };
    let settings = StorageEnv::from_lookup(env)
        .map_err(ServerError::Config)?
        .gcs_settings();
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| ServerError::Startup(format!("building the GCS token client: {e}")))?;
    info!(source = %source.describe(), "GCS credentials: access tokens");
    let engine = engine.clone();
    tokio::spawn(async move {
        loop {
            let wait = match renew(&source, &http, &engine, &settings).await {
                Ok(next) => next,
                Err(e) => {
                    warn!(
                        "GCS access token: {e}; trying again in {}s",
                        RETRY_AFTER.as_secs()
                    );
                    RETRY_AFTER
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
    Ok(())
}

/// Fetches a token and installs it; returns when to renew it.
async fn renew(
    source: &TokenSource,
    http: &reqwest::Client,
    engine: &Arc<Engine>,
    settings: &[String],
) -> Result<Duration, String> {
    let token = source.fetch(http).await?;
    let secret = token.secret(settings);
    let installer = engine.clone();
    let sql = secret.sql.clone();
    tokio::task::spawn_blocking(move || installer.install_secret(&sql))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("installing it: {}", secret.redact(&e.message)))?;
    if let Ok(mut current) = engine.gcs_token.write() {
        *current = Some(token.access_token.clone());
    }
    info!(
        valid_for_secs = token.lifetime.as_secs(),
        "GCS access token installed"
    );
    Ok(token.renew_after())
}

/// The fields of a service-account key file that minting a token needs.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    private_key: Option<String>,
    token_uri: Option<String>,
}

/// Where access tokens come from.
pub enum TokenSource {
    ServiceAccount {
        path: PathBuf,
        email: String,
        key: Box<RsaKeyPair>,
        token_uri: String,
    },
    Metadata {
        host: String,
    },
}

/// An access token and how long it stays valid.
pub struct Token {
    pub access_token: String,
    pub lifetime: Duration,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl TokenSource {
    /// The source the environment configures, if any. A key file that cannot be read or
    /// is not a service-account key is an error naming the file (never its contents).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<TokenSource>, String> {
        if let Some(path) = get(KEY_FILE_ENV) {
            return Self::from_key_file(Path::new(&path)).map(Some);
        }
        // The contract's boolean, as every process reads it (yes/TRUE/on ... alike).
        let metadata = match get(METADATA_ENV).filter(|v| !v.trim().is_empty()) {
            Some(v) => {
                pg_lake_common::contract::parse_bool(METADATA_ENV, &v).map_err(|e| e.to_string())?
            }
            None => false,
        };
        if metadata {
            let host = get(METADATA_HOST_ENV).unwrap_or_else(|| "metadata.google.internal".into());
            return Ok(Some(TokenSource::Metadata { host }));
        }
        Ok(None)
    }

    fn from_key_file(path: &Path) -> Result<TokenSource, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{KEY_FILE_ENV}: cannot read {shown}: {e}"))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| {
            // serde_json's message names a position, not the content.
            format!("{KEY_FILE_ENV}: {shown} is not a JSON key file ({e})")
        })?;
        if file.kind != "service_account" {
            return Err(format!(
                "{KEY_FILE_ENV}: {shown} holds a key of type {:?}; only \"service_account\" keys are supported",
                file.kind
            ));
        }
        let (Some(email), Some(pem)) = (file.client_email, file.private_key) else {
            return Err(format!(
                "{KEY_FILE_ENV}: {shown} lacks client_email or private_key"
            ));
        };
        let der = pem_to_der(&pem)
            .ok_or_else(|| format!("{KEY_FILE_ENV}: the private_key in {shown} is not PEM"))?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            format!("{KEY_FILE_ENV}: the private_key in {shown} is not a PKCS#8 RSA key ({e})")
        })?;
        Ok(TokenSource::ServiceAccount {
            path: path.to_owned(),
            email,
            key: Box::new(key),
            token_uri: file.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.into()),
        })
    }

    /// What the source is, for logs.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::ServiceAccount { path, email, .. } => {
                format!("service account {email} (key {})", path.display())
            }
            TokenSource::Metadata { host } => format!("metadata server {host}"),
        }
    }

    /// Fetches a fresh access token.
    pub async fn fetch(&self, http: &reqwest::Client) -> Result<Token, String> {
        let (request, endpoint) = match self {
            TokenSource::ServiceAccount {
                email,
                key,
                token_uri,
                ..
            } => {
                let assertion = signed_jwt(email, key, token_uri)?;
                let request = http.post(token_uri).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ]);
                (request, token_uri.as_str())
            }
            TokenSource::Metadata { host } => {
                let request = http
                    .get(format!(
                        "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                    ))
                    .header("Metadata-Flavor", "Google");
                (request, host.as_str())
            }
        };
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("requesting a GCS access token from {endpoint}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            // The body of an OAuth error says what is wrong (invalid_grant, ...) and holds
            // no secret; keep it short.
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            return Err(format!(
                "the token endpoint {endpoint} refused the request ({status}): {body}"
            ));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| format!("the token endpoint {endpoint} sent no token: {e}"))?;
        Ok(Token {
            access_token: token.access_token,
            lifetime: Duration::from_secs(token.expires_in.unwrap_or(3600)),
        })
    }
}

impl Token {
    /// The DuckDB secret carrying this token, with the environment's GCS endpoint settings.
    pub fn secret(&self, settings: &[String]) -> SecretStatement {
        let mut parts = vec![
            "TYPE gcs".to_owned(),
            format!("BEARER_TOKEN {}", literal(&self.access_token)),
        ];
        parts.extend(settings.iter().cloned());
        SecretStatement::new(
            "pg_lake_gcs",
            format!(
                "CREATE OR REPLACE SECRET pg_lake_gcs ({})",
                parts.join(", ")
            ),
            vec![self.access_token.clone()],
        )
    }

    /// When to fetch the next token: well before this one expires.
    pub fn renew_after(&self) -> Duration {
        let life = self.lifetime.as_secs();
        Duration::from_secs(
            (life * 3 / 4)
                .max(life.saturating_sub(600))
                .max(MIN_RENEWAL),
        )
    }
}

/// A JWT asking `token_uri` for an access token on behalf of `email`, signed RS256.
fn signed_jwt(email: &str, key: &RsaKeyPair, token_uri: &str) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the token request failed".to_owned())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// The DER bytes of a PEM block.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Option<TokenSource>, String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TokenSource::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_configured_means_no_token_source() {
        assert!(from(&[]).unwrap().is_none());
        assert!(from(&[(METADATA_ENV, "false")]).unwrap().is_none());
        assert!(from(&[(METADATA_ENV, "no")]).unwrap().is_none());
        assert!(from(&[(METADATA_ENV, "YES")]).unwrap().is_some());
        assert!(from(&[(METADATA_ENV, "maybe")]).is_err());
    }

    #[test]
    fn the_metadata_server_host_can_be_overridden() {
        let source = from(&[(METADATA_ENV, "true"), (METADATA_HOST_ENV, "127.0.0.1:1")])
            .unwrap()
            .unwrap();
        assert_eq!(source.describe(), "metadata server 127.0.0.1:1");
    }

    #[test]
    fn bad_key_files_are_named_without_their_contents() {
        let dir = std::env::temp_dir().join(format!("pgduck-gcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.json");
        let err = from(&[(KEY_FILE_ENV, missing.to_str().unwrap())])
            .err()
            .unwrap();
        assert!(err.contains("missing.json"), "{err}");

        let user = dir.join("user.json");
        std::fs::write(
            &user,
            r#"{"type": "authorized_user", "refresh_token": "SECRET-RT"}"#,
        )
        .unwrap();
        let err = from(&[(KEY_FILE_ENV, user.to_str().unwrap())])
            .err()
            .unwrap();
        assert!(
            err.contains("authorized_user") && !err.contains("SECRET-RT"),
            "{err}"
        );

        let broken = dir.join("broken.json");
        std::fs::write(
            &broken,
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nU0VDUkVULUtFWQ==\n-----END PRIVATE KEY-----\n"}"#,
        )
        .unwrap();
        let err = from(&[(KEY_FILE_ENV, broken.to_str().unwrap())])
            .err()
            .unwrap();
        assert!(err.contains("PKCS#8") && !err.contains("U0VDUkVU"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tokens_are_renewed_well_before_they_expire() {
        let t = |secs| Token {
            access_token: "t".into(),
            lifetime: Duration::from_secs(secs),
        };
        assert_eq!(t(3600).renew_after(), Duration::from_secs(3000));
        assert_eq!(t(600).renew_after(), Duration::from_secs(450));
        assert_eq!(t(1).renew_after(), Duration::from_secs(5));
        let secret = t(3600).secret(&["ENDPOINT 'x'".into()]);
        assert!(secret.sql.contains("BEARER_TOKEN 't'") && secret.sql.contains("ENDPOINT 'x'"));
    }
}
