//! How the three processes of a pg_lake node are wired together.
//!
//! The operator (pod specs) and the local appliance (`pg_lake_local`) both derive
//! Postgres GUCs, pgduck_server flags and REST catalog settings from a [`Wiring`],
//! so what runs on a laptop is what runs in a pod.

use std::fmt;

use crate::contract::{env, guc, pgduck_flag, StorageEnv, UrlStyle};

/// Port pgduck_server listens on by default; its socket is `<dir>/.s.PGSQL.5332`.
pub const DEFAULT_PGDUCK_PORT: u16 = 5332;
/// Postgres port inside a pod and in the local appliance.
pub const DEFAULT_POSTGRES_PORT: u16 = 5432;
/// REST catalog port inside a pod and in the local appliance.
pub const DEFAULT_CATALOG_PORT: u16 = 8181;
/// The database that holds the catalog tables and the extension.
pub const DEFAULT_DATABASE: &str = "postgres";
/// The REST catalog's name when nothing sets one (a catalog run on its own).
pub const DEFAULT_CATALOG_NAME: &str = "pg_lake";

/// Names other crates know these settings by; each is defined once, in [`contract`].
pub use crate::contract::env::{
    AWS_ACCESS_KEY_ID as S3_ACCESS_KEY_ID_ENV, AWS_SECRET_ACCESS_KEY as S3_SECRET_ACCESS_KEY_ENV,
    AWS_SESSION_TOKEN as S3_SESSION_TOKEN_ENV, CATALOG_AUTH as CATALOG_AUTH_ENV,
    CATALOG_TOKENS as CATALOG_TOKENS_ENV, GCS_ACCESS_KEY_ID as GCS_HMAC_KEY_ID_ENV,
    GCS_METADATA_SERVER as GCS_METADATA_SERVER_ENV, GCS_SECRET_ACCESS_KEY as GCS_HMAC_SECRET_ENV,
    GOOGLE_APPLICATION_CREDENTIALS as GCS_CREDENTIALS_FILE_ENV,
    PGPASSWORD as CATALOG_DATABASE_PASSWORD_ENV,
};

/// The unprivileged OS user every process of a node runs as: the pod's `runAsUser`
/// (the image's `postgres`), and locally the `postgres` user when started as root.
pub const NODE_OS_USER: &str = "postgres";
/// Mode of the socket directory: only the node's user reaches pgduck_server's socket,
/// which has no authentication of its own.
pub const SOCKET_DIR_MODE: u32 = 0o700;

/// Object storage the warehouse lives in, with the settings every engine needs
/// to reach it. Credentials are never part of the wiring: they travel as
/// environment variables from Secrets (pods) or the caller's environment (local).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectStore {
    /// `s3://bucket/prefix`, `gs://bucket/prefix` or `file:///abs/dir` / `/abs/dir`.
    pub warehouse: String,
    pub s3_region: Option<String>,
    /// `host:port` or URL of an S3-compatible endpoint.
    pub s3_endpoint: Option<String>,
    pub s3_path_style: bool,
    pub s3_use_ssl: bool,
}

/// pgduck_server resource settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgduckSettings {
    /// DuckDB memory limit, e.g. `4GB`; `None` leaves DuckDB's default (80 % of RAM).
    pub memory_limit: Option<String>,
    pub threads: Option<u32>,
    pub cache_dir: String,
    /// Upper bound of the local file cache, e.g. `10GB`.
    pub cache_size: Option<String>,
    pub extensions_dir: Option<String>,
    pub max_clients: u32,
}

impl ObjectStore {
    /// The warehouse with the S3 settings of a parsed environment (see [`StorageEnv`]).
    pub fn from_env(warehouse: String, storage: &StorageEnv) -> ObjectStore {
        let s3 = storage.s3.as_ref();
        ObjectStore {
            warehouse,
            s3_region: s3.and_then(|s| s.region.clone()),
            s3_endpoint: s3.and_then(|s| s.endpoint.clone()),
            s3_path_style: s3.is_some_and(|s| s.url_style == Some(UrlStyle::Path)),
            s3_use_ssl: s3.is_none_or(|s| s.tls()),
        }
    }
}

impl Default for PgduckSettings {
    fn default() -> Self {
        Self {
            memory_limit: None,
            threads: None,
            cache_dir: "/var/cache/pgduck".into(),
            cache_size: None,
            extensions_dir: None,
            max_clients: 10_000,
        }
    }
}

/// The wiring of one node: where each process listens and what it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    /// Directory holding both Postgres' and pgduck_server's unix sockets
    /// (a shared emptyDir in a pod). pgduck_server's socket never leaves it.
    pub socket_dir: String,
    pub pgduck_port: u16,
    pub postgres_port: u16,
    pub catalog_port: u16,
    pub database: String,
    pub catalog_name: String,
    pub object_store: ObjectStore,
    pub pgduck: PgduckSettings,
}

impl Default for Wiring {
    fn default() -> Self {
        Self {
            socket_dir: "/var/run/pg_lake".into(),
            pgduck_port: DEFAULT_PGDUCK_PORT,
            postgres_port: DEFAULT_POSTGRES_PORT,
            catalog_port: DEFAULT_CATALOG_PORT,
            database: DEFAULT_DATABASE.into(),
            // Postgres registers its Iceberg tables with catalog_name = the database
            // (as the original does): the REST catalog serves that catalog, so
            // PyIceberg, Spark and DuckDB see the tables Postgres creates.
            catalog_name: DEFAULT_DATABASE.into(),
            object_store: ObjectStore::default(),
            pgduck: PgduckSettings::default(),
        }
    }
}

/// A Postgres configuration parameter, rendered as a `postgresql.conf` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guc {
    pub name: &'static str,
    pub value: String,
}

impl fmt::Display for Guc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&conf_line(self.name, &self.value))
    }
}

/// One `postgresql.conf` line, the value quoted; also for settings a user adds.
pub fn conf_line(name: &str, value: &str) -> String {
    format!("{name} = '{}'", value.replace('\'', "''"))
}

/// An environment variable whose value is not secret.
pub type EnvVar = (&'static str, String);

impl Wiring {
    /// Connection string the extension uses to reach pgduck_server.
    pub fn pgduck_conninfo(&self) -> String {
        format!("host={} port={}", self.socket_dir, self.pgduck_port)
    }

    /// Where Iceberg tables go when `CREATE TABLE ... USING iceberg` names no location.
    pub fn default_location_prefix(&self) -> String {
        self.object_store
            .warehouse
            .trim_end_matches('/')
            .to_string()
    }

    /// GUCs Postgres needs for pg_lake; the caller adds its own (listen_addresses, ...).
    pub fn postgres_gucs(&self) -> Vec<Guc> {
        vec![
            Guc {
                name: guc::SHARED_PRELOAD_LIBRARIES,
                value: "pg_lake".into(),
            },
            Guc {
                name: guc::UNIX_SOCKET_DIRECTORIES,
                value: self.socket_dir.clone(),
            },
            Guc {
                name: guc::PORT,
                value: self.postgres_port.to_string(),
            },
            Guc {
                name: guc::ENGINE_HOST,
                value: self.pgduck_conninfo(),
            },
            Guc {
                name: guc::DEFAULT_LOCATION_PREFIX,
                value: self.default_location_prefix(),
            },
        ]
    }

    /// Command-line arguments of pgduck_server (without the program name).
    pub fn pgduck_args(&self) -> Vec<String> {
        let p = &self.pgduck;
        let flag = |name: &str, value: &dyn fmt::Display| format!("--{name}={value}");
        let mut args = vec![
            flag(pgduck_flag::UNIX_SOCKET_DIRECTORY, &self.socket_dir),
            flag(pgduck_flag::PORT, &self.pgduck_port),
            flag(pgduck_flag::MAX_CLIENTS, &p.max_clients),
            flag(pgduck_flag::CACHE_DIR, &p.cache_dir),
        ];
        if let Some(m) = &p.memory_limit {
            args.push(flag(pgduck_flag::MEMORY_LIMIT, m));
        }
        if let Some(t) = p.threads {
            args.push(flag(pgduck_flag::THREADS, &t));
        }
        if let Some(s) = &p.cache_size {
            args.push(flag(pgduck_flag::CACHE_SIZE, s));
        }
        if let Some(d) = &p.extensions_dir {
            args.push(flag(pgduck_flag::EXTENSIONS_DIR, d));
        }
        args
    }

    /// Non-secret object-storage settings, as the environment of pgduck_server and
    /// the REST catalog. Keys come separately (`AWS_ACCESS_KEY_ID`, ...).
    pub fn object_store_env(&self) -> Vec<EnvVar> {
        let o = &self.object_store;
        let mut env = Vec::new();
        if let Some(r) = &o.s3_region {
            env.push((env::AWS_REGION, r.clone()));
        }
        if let Some(e) = &o.s3_endpoint {
            env.push((env::AWS_ENDPOINT_URL, endpoint_url(e, o.s3_use_ssl)));
        }
        if o.s3_path_style {
            env.push((env::S3_URL_STYLE, UrlStyle::Path.as_str().into()));
        }
        if !o.s3_use_ssl && o.s3_endpoint.is_some() {
            env.push((env::S3_USE_SSL, "false".into()));
        }
        env
    }

    /// Environment of the REST catalog, which connects to the same database as Postgres.
    /// `database_url` carries no password: it comes from `PGPASSWORD` (a Secret).
    pub fn catalog_env(&self, postgres_host: &str, user: &str) -> Vec<EnvVar> {
        let mut env = vec![
            (
                env::CATALOG_LISTEN,
                format!("0.0.0.0:{}", self.catalog_port),
            ),
            (
                env::CATALOG_DATABASE_URL,
                format!(
                    "postgres://{user}@{postgres_host}:{}/{}",
                    self.postgres_port, self.database
                ),
            ),
            (env::CATALOG_WAREHOUSE, self.object_store.warehouse.clone()),
            (env::CATALOG_NAME, self.catalog_name.clone()),
        ];
        env.extend(self.object_store_env());
        env
    }
}

/// Turns `host:port` into a URL; full URLs pass through.
fn endpoint_url(endpoint: &str, ssl: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if ssl {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gucs_point_postgres_at_the_pgduck_socket() {
        let w = Wiring {
            socket_dir: "/sock".into(),
            pgduck_port: 6000,
            ..Default::default()
        };
        let gucs = w.postgres_gucs();
        let host = gucs
            .iter()
            .find(|g| g.name == "pg_lake_engine.host")
            .unwrap();
        assert_eq!(host.value, "host=/sock port=6000");
        assert!(w
            .pgduck_args()
            .contains(&"--unix_socket_directory=/sock".to_string()));
        assert!(w.pgduck_args().contains(&"--port=6000".to_string()));
    }

    #[test]
    fn guc_values_are_quoted_for_postgresql_conf() {
        let g = Guc {
            name: "x",
            value: "it's".into(),
        };
        assert_eq!(g.to_string(), "x = 'it''s'");
    }

    #[test]
    fn endpoint_gets_a_scheme_matching_tls() {
        let w = Wiring {
            object_store: ObjectStore {
                warehouse: "s3://b/w".into(),
                s3_endpoint: Some("127.0.0.1:9000".into()),
                s3_path_style: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let env = w.object_store_env();
        assert!(env.contains(&("AWS_ENDPOINT_URL", "http://127.0.0.1:9000".into())));
        assert!(env.contains(&("PG_LAKE_S3_URL_STYLE", "path".into())));
        assert!(env.contains(&("PG_LAKE_S3_USE_SSL", "false".into())));
    }

    #[test]
    fn the_env_it_writes_parses_back_to_the_same_settings() {
        for (endpoint, tls) in [("127.0.0.1:9000", false), ("minio:9000", true)] {
            let store = ObjectStore {
                warehouse: "s3://b/w".into(),
                s3_region: Some("eu-west-1".into()),
                s3_endpoint: Some(endpoint.into()),
                s3_path_style: true,
                s3_use_ssl: tls,
            };
            let env = Wiring {
                object_store: store.clone(),
                ..Default::default()
            }
            .object_store_env();
            let parsed = StorageEnv::from_lookup(|k| {
                env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
            })
            .unwrap();
            assert_eq!(ObjectStore::from_env("s3://b/w".into(), &parsed), store);
        }
    }
}
