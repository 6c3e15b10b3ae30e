//! Object-storage credentials taken from the environment at start-up and turned
//! into DuckDB secrets. Keys are only ever placed in the SQL sent to DuckDB; they
//! are redacted from every message that could be logged.

use crate::engine::literal;

/// A `CREATE SECRET` statement and the values that must never be shown.
pub struct SecretStatement {
    pub name: &'static str,
    pub sql: String,
    sensitive: Vec<String>,
}

impl SecretStatement {
    pub fn new(name: &'static str, sql: String, sensitive: Vec<String>) -> SecretStatement {
        SecretStatement {
            name,
            sql,
            sensitive,
        }
    }

    /// Replaces every sensitive value in `message` with `***`.
    pub fn redact(&self, message: &str) -> String {
        self.sensitive
            .iter()
            .filter(|s| !s.is_empty())
            .fold(message.to_owned(), |m, s| m.replace(s.as_str(), "***"))
    }
}

/// Object-storage settings from the environment, read once; the DuckDB secrets
/// ([`StorageEnv::secrets`]) and pgduck_server's own listings ([`crate::etags`]) are both
/// made from them:
/// - S3: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), otherwise the
///   provider credential chain (IRSA, instance profile, ...) when any AWS setting is
///   present; `AWS_REGION`, `AWS_ENDPOINT_URL`, `PG_LAKE_S3_URL_STYLE` (`path`/`vhost`)
///   and `PG_LAKE_S3_USE_SSL` apply to both.
/// - GCS: HMAC keys `GCS_ACCESS_KEY_ID`/`GCS_SECRET_ACCESS_KEY` (service-account keys and
///   the metadata server give bearer tokens instead, see [`crate::gcp`]);
///   `STORAGE_EMULATOR_HOST` points it at another endpoint.
#[derive(Default)]
pub struct StorageEnv {
    /// `None`: no S3 setting at all.
    pub s3: Option<S3Env>,
    /// GCS HMAC key id and secret.
    pub gcs_keys: Option<(String, String)>,
    /// A stand-in GCS endpoint: host[:port] and whether it speaks TLS.
    pub gcs_emulator: Option<(String, bool)>,
}

pub struct S3Env {
    pub region: Option<String>,
    /// host[:port], without scheme.
    pub endpoint: Option<String>,
    pub use_ssl: Option<bool>,
    pub url_style: Option<String>,
    /// Key id, secret, session token; `None`: the provider credential chain.
    pub keys: Option<(String, String, Option<String>)>,
}

impl S3Env {
    /// The endpoint as a URL, e.g. `http://127.0.0.1:5000`.
    pub fn endpoint_url(&self) -> Option<String> {
        let scheme = if self.use_ssl == Some(false) {
            "http"
        } else {
            "https"
        };
        self.endpoint
            .as_ref()
            .map(|host| format!("{scheme}://{host}"))
    }
}

/// `scheme://host[:port]/` or `host[:port]`: the host and the scheme's TLS, if any.
fn split_endpoint(endpoint: &str) -> (String, Option<bool>) {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => (
            rest.trim_end_matches('/').to_owned(),
            Some(scheme == "https"),
        ),
        None => (endpoint.trim_end_matches('/').to_owned(), None),
    }
}

impl StorageEnv {
    pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> StorageEnv {
        let env: std::collections::HashMap<String, String> =
            vars.filter(|(_, v)| !v.is_empty()).collect();
        Self::from_lookup(|k| env.get(k).cloned())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> StorageEnv {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let keys = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(k), Some(s)) => Some((k, s, get("AWS_SESSION_TOKEN"))),
            _ => None,
        };
        let region = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION"));
        let mut use_ssl =
            get("PG_LAKE_S3_USE_SSL").map(|v| !matches!(v.as_str(), "false" | "0" | "off"));
        let endpoint = get("AWS_ENDPOINT_URL_S3")
            .or_else(|| get("AWS_ENDPOINT_URL"))
            .map(|e| {
                let (host, scheme_ssl) = split_endpoint(&e);
                use_ssl = use_ssl.or(scheme_ssl);
                host
            });
        let url_style = get("PG_LAKE_S3_URL_STYLE");
        let wanted = keys.is_some()
            || region.is_some()
            || endpoint.is_some()
            || use_ssl.is_some()
            || url_style.is_some()
            || ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_PROFILE"]
                .iter()
                .any(|k| get(k).is_some());
        StorageEnv {
            s3: wanted.then_some(S3Env {
                region,
                endpoint,
                use_ssl,
                url_style,
                keys,
            }),
            gcs_keys: get("GCS_ACCESS_KEY_ID").zip(get("GCS_SECRET_ACCESS_KEY")),
            gcs_emulator: get("STORAGE_EMULATOR_HOST").map(|e| {
                let (host, ssl) = split_endpoint(&e);
                (host, ssl.unwrap_or(false))
            }),
        }
    }

    /// GCS secret settings: the stand-in endpoint, its TLS and path style.
    pub fn gcs_settings(&self) -> Vec<String> {
        let Some((host, ssl)) = &self.gcs_emulator else {
            return Vec::new();
        };
        vec![
            format!("ENDPOINT {}", literal(host)),
            format!("USE_SSL {ssl}"),
            "URL_STYLE 'path'".to_owned(),
        ]
    }

    /// The `CREATE SECRET` statements these settings call for.
    pub fn secrets(&self) -> Vec<SecretStatement> {
        let mut out = Vec::new();
        if let Some(s3) = &self.s3 {
            let mut settings = Vec::new();
            if let Some(region) = &s3.region {
                settings.push(format!("REGION {}", literal(region)));
            }
            if let Some(host) = &s3.endpoint {
                settings.push(format!("ENDPOINT {}", literal(host)));
            }
            if let Some(ssl) = s3.use_ssl {
                settings.push(format!("USE_SSL {ssl}"));
            }
            if let Some(style) = &s3.url_style {
                settings.push(format!("URL_STYLE {}", literal(style)));
            }
            let (mut parts, sensitive) = match &s3.keys {
                Some((key, secret, token)) => {
                    let mut parts = vec![
                        "TYPE s3".to_owned(),
                        format!("KEY_ID {}", literal(key)),
                        format!("SECRET {}", literal(secret)),
                    ];
                    let mut sensitive = vec![secret.clone()];
                    if let Some(token) = token {
                        parts.push(format!("SESSION_TOKEN {}", literal(token)));
                        sensitive.push(token.clone());
                    }
                    (parts, sensitive)
                }
                None => (
                    vec![
                        "TYPE s3".to_owned(),
                        "PROVIDER credential_chain".to_owned(),
                        "VALIDATION 'none'".to_owned(),
                    ],
                    Vec::new(),
                ),
            };
            parts.extend(settings);
            out.push(SecretStatement {
                name: "pg_lake_s3",
                sql: format!("CREATE OR REPLACE SECRET pg_lake_s3 ({})", parts.join(", ")),
                sensitive,
            });
        }
        if let Some((key, secret)) = &self.gcs_keys {
            let mut parts = vec![
                "TYPE gcs".to_owned(),
                format!("KEY_ID {}", literal(key)),
                format!("SECRET {}", literal(secret)),
            ];
            parts.extend(self.gcs_settings());
            out.push(SecretStatement {
                name: "pg_lake_gcs",
                sql: format!(
                    "CREATE OR REPLACE SECRET pg_lake_gcs ({})",
                    parts.join(", ")
                ),
                sensitive: vec![secret.clone()],
            });
        }
        out
    }
}

/// The secrets the environment asks for (see [`StorageEnv`]).
#[cfg(test)]
pub fn secrets_from_env(vars: impl Iterator<Item = (String, String)>) -> Vec<SecretStatement> {
    StorageEnv::from_env(vars).secrets()
}

/// Test helper: an environment from pairs.
#[cfg(test)]
pub fn env_of(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
        .into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::env_of as env;

    #[test]
    fn keys_become_a_config_secret_with_endpoint_settings() {
        let s = secrets_from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("PG_LAKE_S3_URL_STYLE", "path"),
            ("AWS_REGION", "us-east-1"),
        ]));
        assert_eq!(s.len(), 1);
        let sql = &s[0].sql;
        assert!(
            sql.starts_with("CREATE OR REPLACE SECRET pg_lake_s3 (TYPE s3, KEY_ID 'AKIA'"),
            "{sql}"
        );
        assert!(sql.contains("ENDPOINT '127.0.0.1:9000'"));
        assert!(sql.contains("USE_SSL false"));
        assert!(sql.contains("URL_STYLE 'path'"));
        assert_eq!(s[0].redact("bad secret s3cr3t here"), "bad secret *** here");
    }

    #[test]
    fn settings_without_keys_use_the_credential_chain() {
        let s = secrets_from_env(env(&[("AWS_REGION", "eu-west-1")]));
        assert!(s[0].sql.contains("PROVIDER credential_chain"));
        assert!(secrets_from_env(env(&[])).is_empty());
    }

    #[test]
    fn gcs_hmac_keys_become_a_gcs_secret() {
        let s = secrets_from_env(env(&[
            ("GCS_ACCESS_KEY_ID", "GOOG"),
            ("GCS_SECRET_ACCESS_KEY", "x"),
        ]));
        assert_eq!(s.len(), 1);
        assert!(s[0].sql.contains("TYPE gcs"));
    }
}
