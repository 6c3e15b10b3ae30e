//! Command-line interface, compatible with the original pgduck_server's flags.

use std::path::PathBuf;

use clap::Parser;

use crate::error::ServerError;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "pgduck_server",
    version,
    about = "DuckDB behind the Postgres wire protocol, on a unix socket (TCP optional).",
    // As getopt in the original: a repeated flag's last value wins.
    args_override_self = true
)]
pub struct Config {
    /// Directory that holds the unix socket `.s.PGSQL.<port>`.
    #[arg(
        short = 'U',
        long = "unix_socket_directory",
        default_value = "/tmp",
        env = "PGDUCK_UNIX_SOCKET_DIRECTORY"
    )]
    pub unix_socket_directory: PathBuf,

    /// Port number: names the socket file, and is the TCP port when --listen_address is given.
    #[arg(short = 'P', long, default_value_t = 5332, env = "PGDUCK_PORT")]
    pub port: u16,

    /// Maximum number of concurrent client sessions; further ones are refused with SQLSTATE 53300.
    #[arg(
        short = 'M',
        long = "max_clients",
        default_value_t = 10_000,
        env = "PGDUCK_MAX_CLIENTS"
    )]
    pub max_clients: usize,

    /// DuckDB memory limit, e.g. `4GB` or `80%` (DuckDB's default is 80 % of RAM).
    #[arg(short = 'l', long = "memory_limit", env = "PGDUCK_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,

    /// DuckDB worker threads (default: one per core).
    #[arg(long, env = "PGDUCK_THREADS")]
    pub threads: Option<u32>,

    /// Directory for DuckDB's spill files and cached remote data.
    #[arg(long = "cache_dir", env = "PGDUCK_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Upper bound on what --cache_dir may hold, e.g. `10GB`.
    #[arg(long = "cache_size", env = "PGDUCK_CACHE_SIZE")]
    pub cache_size: Option<String>,

    /// DuckDB extension directory, laid out as `<dir>/v<version>/<platform>/<name>.duckdb_extension`.
    #[arg(long = "extensions_dir", env = "PGDUCK_EXTENSIONS_DIR")]
    pub extensions_dir: Option<PathBuf>,

    /// SQL file run once at start-up, before clients are accepted.
    #[arg(long = "init_file_path", env = "PGDUCK_INIT_FILE_PATH")]
    pub init_file_path: Option<PathBuf>,

    /// Persistent DuckDB database file (default: in memory).
    #[arg(
        short = 'D',
        long = "duckdb_database_file_path",
        env = "PGDUCK_DATABASE_FILE_PATH"
    )]
    pub duckdb_database_file_path: Option<PathBuf>,

    /// File that receives the server's process id while it runs.
    #[arg(short = 'p', long, env = "PGDUCK_PIDFILE")]
    pub pidfile: Option<PathBuf>,

    /// Validate the flags, print the configuration and exit (the socket directory may
    /// not exist yet).
    #[arg(short = 'c', long = "check_cli_params_only")]
    pub check_cli_params_only: bool,

    /// Also listen on TCP at this address (e.g. 127.0.0.1). Requires PGDUCK_PASSWORD.
    #[arg(long = "listen_address", env = "PGDUCK_LISTEN_ADDRESS")]
    pub listen_address: Option<String>,

    /// Log at debug level.
    #[arg(short = 'd', long)]
    pub debug: bool,

    /// Log every query.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Accepted for the original's command lines: the largest file its cache-on-write
    /// kept (bytes, >= 0). This server caches files when they are read, not written.
    #[arg(
        short = 'L',
        long = "cache_on_write_max_size",
        value_parser = clap::value_parser!(u64),
        allow_negative_numbers = true,
        default_value_t = 1 << 30
    )]
    pub cache_on_write_max_size: u64,

    /// Accepted for the original's command lines: this server never installs extensions
    /// (it loads them from --extensions_dir, and DuckDB's autoinstall is off).
    #[arg(long = "no_extension_install")]
    pub no_extension_install: bool,
}

/// Password TCP clients must present; read from the environment only, never from argv.
pub const PASSWORD_ENV: &str = "PGDUCK_PASSWORD";

impl Config {
    pub fn socket_path(&self) -> PathBuf {
        self.unix_socket_directory
            .join(format!(".s.PGSQL.{}", self.port))
    }

    /// The Linux abstract socket name when the directory is given as `@name` (as libpq
    /// reads `host=@name`): `name/.s.PGSQL.<port>` in the abstract namespace, no file.
    pub fn abstract_socket(&self) -> Option<String> {
        let dir = self.unix_socket_directory.to_str()?;
        let name = dir.strip_prefix('@')?;
        Some(format!("{name}/.s.PGSQL.{}", self.port))
    }

    /// Checks what can be checked without starting anything. With
    /// --check_cli_params_only the socket directory need not exist yet.
    pub fn validate(&self) -> Result<(), ServerError> {
        let dir = &self.unix_socket_directory;
        let may_be_missing = self.check_cli_params_only && !dir.exists();
        if self.abstract_socket().is_some_and(|name| name.len() > 107) {
            return Err(ServerError::Config(format!(
                "--unix_socket_directory {}: an abstract socket name has at most 107 bytes",
                dir.display()
            )));
        }
        if !dir.is_dir() && !may_be_missing && self.abstract_socket().is_none() {
            return Err(ServerError::Config(format!(
                "--unix_socket_directory {} is not a directory",
                dir.display()
            )));
        }
        if self.port == 0 {
            return Err(ServerError::Config(
                "--port must be between 1 and 65535".into(),
            ));
        }
        if self.max_clients == 0 {
            return Err(ServerError::Config(
                "--max_clients must be at least 1".into(),
            ));
        }
        if let Some(m) = &self.memory_limit {
            memory_limit_setting(m)
                .map_err(|e| ServerError::Config(format!("--memory_limit {m:?}: {e}")))?;
        }
        if let Some(s) = &self.cache_size {
            parse_size(s, false)
                .map_err(|e| ServerError::Config(format!("--cache_size {s:?}: {e}")))?;
        }
        if self.threads == Some(0) {
            return Err(ServerError::Config("--threads must be at least 1".into()));
        }
        for (flag, path) in [
            ("--extensions_dir", &self.extensions_dir),
            ("--cache_dir", &self.cache_dir),
        ] {
            if let Some(p) = path {
                if p.exists() && !p.is_dir() {
                    return Err(ServerError::Config(format!(
                        "{flag} {} is not a directory",
                        p.display()
                    )));
                }
            }
        }
        if let Some(p) = &self.init_file_path {
            if !p.is_file() {
                return Err(ServerError::Config(format!(
                    "--init_file_path {} does not exist or is not a file",
                    p.display()
                )));
            }
        }
        if let Some(addr) = &self.listen_address {
            if addr.parse::<std::net::IpAddr>().is_err() {
                return Err(ServerError::Config(format!(
                    "--listen_address {addr:?} is not an IP address"
                )));
            }
            if std::env::var(PASSWORD_ENV)
                .map(|p| p.is_empty())
                .unwrap_or(true)
            {
                return Err(ServerError::Config(format!(
                    "--listen_address needs a password: set {PASSWORD_ENV}"
                )));
            }
        }
        Ok(())
    }
}

impl Config {
    /// What --check_cli_params_only prints: every setting, no secret (the password and
    /// storage keys live in the environment and are not shown).
    pub fn summary(&self) -> String {
        let opt = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(none)".to_owned(), |p| p.display().to_string())
        };
        let mut out = vec![
            format!(
                "unix_socket_directory: {}",
                self.unix_socket_directory.display()
            ),
            format!("socket: {}", self.socket_path().display()),
            format!("port: {}", self.port),
            format!("max_clients: {}", self.max_clients),
            format!(
                "memory_limit: {}",
                self.memory_limit
                    .as_deref()
                    .unwrap_or("(DuckDB's default, 80% of memory)")
            ),
            format!(
                "threads: {}",
                self.threads
                    .map_or("(one per core)".to_owned(), |t| t.to_string())
            ),
            format!("cache_dir: {}", opt(&self.cache_dir)),
            format!(
                "cache_size: {}",
                self.cache_size.as_deref().unwrap_or("(10GB)")
            ),
            format!("cache_on_write_max_size: {}", self.cache_on_write_max_size),
            format!("extensions_dir: {}", opt(&self.extensions_dir)),
            format!("no_extension_install: {}", self.no_extension_install),
            format!("init_file_path: {}", opt(&self.init_file_path)),
            format!(
                "duckdb_database_file_path: {}",
                self.duckdb_database_file_path
                    .as_ref()
                    .map_or("(in memory)".to_owned(), |p| p.display().to_string())
            ),
            format!("pidfile: {}", opt(&self.pidfile)),
            format!(
                "listen_address: {}",
                self.listen_address
                    .as_deref()
                    .unwrap_or("(unix socket only)")
            ),
            format!("debug: {}", self.debug),
            format!("verbose: {}", self.verbose),
        ];
        if !self.unix_socket_directory.exists() && self.abstract_socket().is_none() {
            out.push(format!(
                "note: {} does not exist yet",
                self.unix_socket_directory.display()
            ));
        }
        out.join("\n")
    }
}

/// Parses sizes such as `512MB`, `4 GiB`, `1.5GB`, `1024` (bytes) or, when
/// `allow_percent`, `80%`. Returns bytes (percentages return 0: DuckDB resolves them).
/// The value DuckDB's `memory_limit` gets for `--memory_limit`: a size as given, or a
/// percentage of the memory this process may use (the cgroup's limit in a container, else
/// the machine's), which DuckDB itself does not accept.
pub fn memory_limit_setting(s: &str) -> Result<String, String> {
    let t = s.trim();
    let Some(p) = t.strip_suffix('%') else {
        parse_size(t, false)?;
        return Ok(t.to_string());
    };
    parse_size(t, true)?;
    let pct: f64 = p
        .trim()
        .parse()
        .map_err(|_| "expected a number before %".to_string())?;
    let total = available_memory().ok_or("cannot tell how much memory this machine has")?;
    Ok(format!(
        "{}MiB",
        ((total as f64 * pct / 100.0) as u64 >> 20).max(1)
    ))
}

/// Bytes of memory available to this process: the cgroup (v2, then v1) limit if one is
/// set, else MemTotal.
fn available_memory() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let total = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    match (cgroup, total) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

pub fn parse_size(s: &str, allow_percent: bool) -> Result<u64, String> {
    let t = s.trim();
    if let Some(p) = t.strip_suffix('%') {
        if !allow_percent {
            return Err("a percentage is not accepted here".into());
        }
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| "expected a number before %".to_string())?;
        if !(0.0..=100.0).contains(&v) || v == 0.0 {
            return Err("percentage must be in (0, 100]".into());
        }
        return Ok(0);
    }
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| "expected a size like 512MB, 4GiB or 80%".to_string())?;
    if !value.is_finite() || value <= 0.0 {
        return Err("size must be positive".into());
    }
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_percentage_becomes_a_size_duckdb_takes() {
        assert_eq!(memory_limit_setting("4GB").unwrap(), "4GB");
        let half = memory_limit_setting("50%").unwrap();
        let mib: u64 = half.trim_end_matches("MiB").parse().unwrap();
        assert!(mib > 0 && half.ends_with("MiB"), "{half}");
        assert!(memory_limit_setting("0%").is_err());
        assert!(memory_limit_setting("lots").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1024", false), Ok(1024));
        assert_eq!(parse_size("4GB", false), Ok(4_000_000_000));
        assert_eq!(parse_size("2 GiB", false), Ok(2 << 30));
        assert_eq!(parse_size("80%", true), Ok(0));
        assert!(parse_size("80%", false).is_err());
        assert!(parse_size("-1GB", false).is_err());
        assert!(parse_size("12XB", false).unwrap_err().contains("XB"));
        assert!(parse_size("lots", false).is_err());
    }

    #[test]
    fn short_flags_and_the_last_of_a_repeated_flag() {
        let c = Config::try_parse_from([
            "pgduck_server",
            "-U",
            "/run/a",
            "-P",
            "6001",
            "-v",
            "-d",
            "--port",
            "6002",
            "-U",
            "/run/b",
            "--cache_on_write_max_size",
            "0",
            "--no_extension_install",
            "-c",
            "-l",
            "1GB",
            "-M",
            "5",
            "-D",
            "/tmp/x.db",
            "-p",
            "/tmp/x.pid",
        ])
        .unwrap();
        assert_eq!(c.unix_socket_directory, PathBuf::from("/run/b"));
        assert_eq!(c.port, 6002);
        assert!(c.verbose && c.debug && c.check_cli_params_only && c.no_extension_install);
        assert_eq!(c.cache_on_write_max_size, 0);
        assert_eq!(c.memory_limit.as_deref(), Some("1GB"));
        assert_eq!(c.max_clients, 5);
        assert_eq!(c.pidfile, Some(PathBuf::from("/tmp/x.pid")));
        assert!(
            Config::try_parse_from(["pgduck_server", "--cache_on_write_max_size", "-1"]).is_err()
        );
        assert!(Config::try_parse_from(["pgduck_server", "--port", "x"]).is_err());
        assert!(Config::try_parse_from(["pgduck_server", "--no_such_flag"]).is_err());
    }

    #[test]
    fn socket_path_follows_postgres_naming() {
        let c = Config::parse_from([
            "pgduck_server",
            "--unix_socket_directory",
            "/run/x",
            "--port",
            "6000",
        ]);
        assert_eq!(c.socket_path(), PathBuf::from("/run/x/.s.PGSQL.6000"));
    }
}
