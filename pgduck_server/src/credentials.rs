//! Object-storage credentials taken from the environment at start-up and turned
//! into DuckDB secrets. Keys are only ever placed in the SQL sent to DuckDB; they
//! are redacted from every message that could be logged.

use pg_lake_common::contract;
use pg_lake_common::sql::quote_literal as literal;

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

/// Object-storage settings from the environment, read once by the parser every pg_lake
/// process shares ([`pg_lake_common::contract::StorageEnv`], which documents the
/// variables and how each is spelled); the DuckDB secrets ([`StorageEnv::secrets`]) and
/// pgduck_server's own listings ([`crate::etags`]) are both made from them:
/// - S3: keys, or the provider credential chain (IRSA, instance profile, ...) when only
///   settings are present; region, endpoint, URL style and TLS apply to both.
/// - GCS: HMAC keys (service-account keys and the metadata server give bearer tokens
///   instead, see [`crate::gcp`]); `STORAGE_EMULATOR_HOST` points it at another endpoint.
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
    /// `path` or `vhost`.
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

impl StorageEnv {
    pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> Result<StorageEnv, String> {
        let env: std::collections::HashMap<String, String> = vars.collect();
        Self::from_lookup(|k| env.get(k).cloned())
    }

    /// A variable spelled in a way no pg_lake process accepts is an error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<StorageEnv, String> {
        let shared = contract::StorageEnv::from_lookup(get).map_err(|e| e.to_string())?;
        Ok(StorageEnv {
            s3: shared.s3.map(|s3| S3Env {
                region: s3.region,
                endpoint: s3.endpoint,
                use_ssl: s3.use_ssl,
                url_style: s3.url_style.map(|style| style.as_str().to_owned()),
                keys: s3.keys.map(|k| (k.id, k.secret, k.session_token)),
            }),
            gcs_keys: shared.gcs.hmac_keys.map(|k| (k.id, k.secret)),
            gcs_emulator: shared.gcs.emulator,
        })
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
    StorageEnv::from_env(vars).unwrap().secrets()
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

    #[test]
    fn use_ssl_is_spelled_as_in_postgres_and_wrong_spellings_stop_start_up() {
        for off in ["0", "off", "FALSE", "no"] {
            let s = secrets_from_env(env(&[
                ("AWS_ENDPOINT_URL", "127.0.0.1:9000"),
                ("PG_LAKE_S3_USE_SSL", off),
            ]));
            assert!(s[0].sql.contains("USE_SSL false"), "{off}: {}", s[0].sql);
        }
        let e = StorageEnv::from_env(env(&[("PG_LAKE_S3_USE_SSL", "nope")])).err();
        assert!(e.unwrap().starts_with("PG_LAKE_S3_USE_SSL: "));
    }
}
