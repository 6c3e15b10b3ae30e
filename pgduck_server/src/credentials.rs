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

/// Builds the secrets the environment asks for:
/// - S3: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) as a config
///   secret, otherwise the provider credential chain (IRSA, instance profile, ...) when
///   any AWS setting is present; `AWS_REGION`, `AWS_ENDPOINT_URL`,
///   `PG_LAKE_S3_URL_STYLE` (`path`/`vhost`) and `PG_LAKE_S3_USE_SSL` apply to both.
/// - GCS: HMAC keys `GCS_ACCESS_KEY_ID`/`GCS_SECRET_ACCESS_KEY` (service-account keys and
///   the metadata server give bearer tokens instead, see [`crate::gcp`]);
///   `STORAGE_EMULATOR_HOST` points it at another endpoint.
pub fn secrets_from_env(vars: impl Iterator<Item = (String, String)>) -> Vec<SecretStatement> {
    let env: std::collections::HashMap<String, String> =
        vars.filter(|(_, v)| !v.is_empty()).collect();
    let get = |k: &str| env.get(k).cloned();
    let mut out = Vec::new();

    let mut s3_settings: Vec<String> = Vec::new();
    if let Some(region) = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
        s3_settings.push(format!("REGION {}", literal(&region)));
    }
    let mut use_ssl =
        get("PG_LAKE_S3_USE_SSL").map(|v| !matches!(v.as_str(), "false" | "0" | "off"));
    if let Some(endpoint) = get("AWS_ENDPOINT_URL_S3").or_else(|| get("AWS_ENDPOINT_URL")) {
        let (host, scheme_ssl) = match endpoint.split_once("://") {
            Some((scheme, rest)) => (
                rest.trim_end_matches('/').to_owned(),
                Some(scheme == "https"),
            ),
            None => (endpoint.clone(), None),
        };
        use_ssl = use_ssl.or(scheme_ssl);
        s3_settings.push(format!("ENDPOINT {}", literal(&host)));
    }
    if let Some(ssl) = use_ssl {
        s3_settings.push(format!("USE_SSL {ssl}"));
    }
    if let Some(style) = get("PG_LAKE_S3_URL_STYLE") {
        s3_settings.push(format!("URL_STYLE {}", literal(&style)));
    }
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(key), Some(secret)) => {
            let mut parts = vec![
                "TYPE s3".to_owned(),
                format!("KEY_ID {}", literal(&key)),
                format!("SECRET {}", literal(&secret)),
            ];
            let mut sensitive = vec![secret.clone()];
            if let Some(token) = get("AWS_SESSION_TOKEN") {
                parts.push(format!("SESSION_TOKEN {}", literal(&token)));
                sensitive.push(token);
            }
            parts.extend(s3_settings);
            out.push(SecretStatement {
                name: "pg_lake_s3",
                sql: format!("CREATE OR REPLACE SECRET pg_lake_s3 ({})", parts.join(", ")),
                sensitive,
            });
        }
        _ if !s3_settings.is_empty()
            || get("AWS_ROLE_ARN").is_some()
            || get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
            || get("AWS_PROFILE").is_some() =>
        {
            let mut parts = vec![
                "TYPE s3".to_owned(),
                "PROVIDER credential_chain".to_owned(),
                "VALIDATION 'none'".to_owned(),
            ];
            parts.extend(s3_settings);
            out.push(SecretStatement {
                name: "pg_lake_s3",
                sql: format!("CREATE OR REPLACE SECRET pg_lake_s3 ({})", parts.join(", ")),
                sensitive: Vec::new(),
            });
        }
        _ => {}
    }

    if let (Some(key), Some(secret)) = (get("GCS_ACCESS_KEY_ID"), get("GCS_SECRET_ACCESS_KEY")) {
        let mut parts = vec![
            "TYPE gcs".to_owned(),
            format!("KEY_ID {}", literal(&key)),
            format!("SECRET {}", literal(&secret)),
        ];
        parts.extend(gcs_settings(|k| get(k)));
        out.push(SecretStatement {
            name: "pg_lake_gcs",
            sql: format!(
                "CREATE OR REPLACE SECRET pg_lake_gcs ({})",
                parts.join(", ")
            ),
            sensitive: vec![secret],
        });
    }
    out
}

/// GCS secret settings from the environment: `STORAGE_EMULATOR_HOST` (Google's variable
/// for a stand-in endpoint, e.g. `http://127.0.0.1:4443`) sets endpoint, TLS and path style.
pub fn gcs_settings(get: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let Some(emulator) = get("STORAGE_EMULATOR_HOST").filter(|v| !v.is_empty()) else {
        return Vec::new();
    };
    let (host, ssl) = match emulator.split_once("://") {
        Some((scheme, rest)) => (rest.trim_end_matches('/').to_owned(), scheme == "https"),
        None => (emulator.clone(), false),
    };
    vec![
        format!("ENDPOINT {}", literal(&host)),
        format!("USE_SSL {ssl}"),
        "URL_STYLE 'path'".to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

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
