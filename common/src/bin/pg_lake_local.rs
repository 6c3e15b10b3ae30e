//! Runs the whole appliance on one machine, wired exactly as the operator wires a
//! pod (see `pg_lake_common::wiring`): Postgres with pg_lake, the pgduck_server
//! sidecar on a shared socket directory, and the REST catalog on the same database.
//! Data stays in `--data-dir` between runs; Ctrl-C stops everything cleanly.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_lake_common::wiring::{self, ObjectStore, PgduckSettings, Wiring};

const USAGE: &str = "\
usage: pg_lake_local [--data-dir DIR] [--warehouse URI] [--port N] [--catalog-port N] [--pgduck-port N]

  --data-dir DIR      where Postgres data, sockets, logs and the default warehouse live
                      (default: $PG_LAKE_CACHE/appliance or ~/.cache/pg_lake/appliance)
  --warehouse URI     s3://bucket/prefix, gs://bucket/prefix or a local directory
                      (default: DIR/warehouse). S3 settings come from AWS_* variables.
  --port N            Postgres port on 127.0.0.1 (default 5432)
  --catalog-port N    REST catalog port on 127.0.0.1 (default 8181)
  --pgduck-port N     names pgduck_server's socket (default 5332)";

struct Options {
    data_dir: PathBuf,
    warehouse: Option<String>,
    port: u16,
    catalog_port: u16,
    pgduck_port: u16,
}

fn parse_options() -> Result<Options, String> {
    let cache = std::env::var("PG_LAKE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/pg_lake")
        });
    let mut o = Options {
        data_dir: cache.join("appliance"),
        warehouse: None,
        port: 5432,
        catalog_port: 8181,
        pgduck_port: 5332,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let port = |v: &str| {
            v.parse::<u16>()
                .map_err(|_| format!("{flag}: {v:?} is not a port number"))
        };
        match flag.as_str() {
            "--data-dir" => o.data_dir = PathBuf::from(value),
            "--warehouse" => o.warehouse = Some(value),
            "--port" => o.port = port(&value)?,
            "--catalog-port" => o.catalog_port = port(&value)?,
            "--pgduck-port" => o.pgduck_port = port(&value)?,
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg_lake_local: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The processes of the appliance, stopped in reverse order on drop.
#[derive(Default)]
struct Processes(Vec<(&'static str, Child)>);

impl Processes {
    fn stop_all(&mut self) {
        while let Some((name, mut child)) = self.0.pop() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().ok().flatten().is_none() {
                eprintln!("{name} did not stop in time; killing it");
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> Option<&'static str> {
        self.0
            .iter_mut()
            .find_map(|(n, c)| c.try_wait().ok().flatten().map(|_| *n))
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn run(o: Options) -> Result<(), String> {
    let dir = &o.data_dir;
    let pgdata = dir.join("pgdata");
    let run_dir = dir.join("run");
    let logs = dir.join("logs");
    for d in [dir, &run_dir, &logs, &dir.join("cache")] {
        fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let warehouse = match &o.warehouse {
        Some(w) => w.clone(),
        None => {
            let w = dir.join("warehouse");
            fs::create_dir_all(&w).map_err(|e| format!("creating {}: {e}", w.display()))?;
            format!("file://{}", w.display())
        }
    };
    let wiring = Wiring {
        socket_dir: run_dir.display().to_string(),
        pgduck_port: o.pgduck_port,
        postgres_port: o.port,
        catalog_port: o.catalog_port,
        object_store: ObjectStore {
            warehouse,
            s3_region: std::env::var("AWS_REGION").ok(),
            s3_endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
            s3_path_style: std::env::var("PG_LAKE_S3_URL_STYLE").is_ok_and(|v| v == "path"),
            s3_use_ssl: std::env::var("PG_LAKE_S3_USE_SSL").map_or(true, |v| v != "false"),
        },
        pgduck: PgduckSettings {
            cache_dir: dir.join("cache").display().to_string(),
            extensions_dir: std::env::var("PG_LAKE_DUCKDB_EXTENSIONS").ok(),
            ..PgduckSettings::default()
        },
        ..Wiring::default()
    };

    let pg_bin = PathBuf::from(
        std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    );
    let as_root = is_root();
    if as_root {
        // Postgres refuses to run as root; everything it touches belongs to `postgres`.
        for d in [dir.as_path(), &run_dir, &logs] {
            chown_postgres(d)?;
        }
    }
    let password = ensure_password(dir)?;
    if !pgdata.join("PG_VERSION").exists() {
        init_cluster(&pg_bin, &pgdata, dir, as_root)?;
    }
    write_postgres_conf(&pgdata, &wiring)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("installing signal handler: {e}"))?;
    }

    let bin_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("cannot locate sibling binaries")?;
    let mut procs = Processes::default();

    let pgduck = Command::new(bin_dir.join("pgduck_server"))
        .args(wiring.pgduck_args())
        .envs(wiring.object_store_env())
        .stdout(Stdio::null())
        .stderr(log_file(&logs, "pgduck_server.log")?)
        .spawn()
        .map_err(|e| format!("starting pgduck_server: {e}"))?;
    procs.0.push(("pgduck_server", pgduck));
    wait_until(&stop, Duration::from_secs(60), "pgduck_server", || {
        run_dir
            .join(format!(".s.PGSQL.{}", wiring.pgduck_port))
            .exists()
    })?;

    let mut postgres = Command::new(pg_bin.join("postgres"));
    postgres.arg("-D").arg(&pgdata);
    let postgres = as_postgres_user(postgres, as_root)
        .stdout(Stdio::null())
        .stderr(log_file(&logs, "postgres.log")?)
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    procs.0.push(("postgres", postgres));
    wait_until(&stop, Duration::from_secs(60), "postgres", || {
        Command::new(pg_bin.join("pg_isready"))
            .args([
                "-q",
                "-U",
                "postgres",
                "-h",
                &wiring.socket_dir,
                "-p",
                &wiring.postgres_port.to_string(),
            ])
            .status()
            .is_ok_and(|s| s.success())
    })?;
    let psql = Command::new(pg_bin.join("psql"))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &wiring.socket_dir,
            "-p",
            &wiring.postgres_port.to_string(),
        ])
        .args([
            "-U",
            "postgres",
            "-d",
            &wiring.database,
            "-c",
            "CREATE EXTENSION IF NOT EXISTS pg_lake CASCADE",
        ])
        .output()
        .map_err(|e| format!("running psql: {e}"))?;
    if !psql.status.success() {
        return Err(format!(
            "CREATE EXTENSION pg_lake failed: {}",
            String::from_utf8_lossy(&psql.stderr).trim()
        ));
    }

    let mut catalog_env = wiring.catalog_env("127.0.0.1", "postgres");
    for (k, v) in catalog_env.iter_mut() {
        if *k == "REST_CATALOG_LISTEN" {
            *v = format!("127.0.0.1:{}", wiring.catalog_port);
        }
    }
    let catalog = Command::new(bin_dir.join("rest_catalog"))
        .envs(catalog_env)
        .env(wiring::CATALOG_AUTH_ENV, "none")
        .env("REST_CATALOG_LOG_FORMAT", "text")
        .env(wiring::CATALOG_DATABASE_PASSWORD_ENV, &password)
        .stdout(Stdio::null())
        .stderr(log_file(&logs, "rest_catalog.log")?)
        .spawn()
        .map_err(|e| format!("starting rest_catalog: {e}"))?;
    procs.0.push(("rest_catalog", catalog));
    let catalog_url = format!("http://127.0.0.1:{}", wiring.catalog_port);
    wait_until(&stop, Duration::from_secs(60), "rest_catalog", || {
        std::net::TcpStream::connect(("127.0.0.1", wiring.catalog_port)).is_ok()
    })?;

    println!(
        "pg_lake is running. Stop it with Ctrl-C; data stays in {}.",
        dir.display()
    );
    println!();
    println!(
        "  psql \"postgres://postgres:{password}@127.0.0.1:{}/{}\"",
        wiring.postgres_port, wiring.database
    );
    println!(
        "  Iceberg REST catalog: {catalog_url}  (warehouse {})",
        wiring.object_store.warehouse
    );
    println!("  logs: {}", logs.display());
    std::io::stdout().flush().ok();

    while !stop.load(Ordering::Relaxed) {
        if let Some(name) = procs.exited() {
            return Err(format!(
                "{name} exited unexpectedly; see {}",
                logs.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stopping…");
    procs.stop_all();
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn chown_postgres(p: &Path) -> Result<(), String> {
    let ok = Command::new("chown")
        .arg("postgres:postgres")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(())
        .ok_or_else(|| format!("cannot hand {} to the postgres user", p.display()))
}

fn as_postgres_user(cmd: Command, as_root: bool) -> Command {
    if !as_root {
        return cmd;
    }
    let mut wrapped = Command::new("runuser");
    wrapped
        .args(["-u", "postgres", "--"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    wrapped
}

fn log_file(logs: &Path, name: &str) -> Result<fs::File, String> {
    let path = logs.join(name);
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o666));
    Ok(f)
}

/// The superuser password, generated once and kept (mode 0600) in the data dir.
fn ensure_password(dir: &Path) -> Result<String, String> {
    let path = dir.join("superuser.password");
    if let Ok(p) = fs::read_to_string(&path) {
        return Ok(p.trim().to_owned());
    }
    let mut bytes = [0u8; 18];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    fs::write(&path, &password).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    Ok(password)
}

fn init_cluster(pg_bin: &Path, pgdata: &Path, dir: &Path, as_root: bool) -> Result<(), String> {
    let pwfile = dir.join("run/initdb.pw");
    fs::write(&pwfile, ensure_password(dir)?).map_err(|e| e.to_string())?;
    if as_root {
        chown_postgres(&pwfile)?;
    }
    let mut initdb = Command::new(pg_bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(pgdata)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()));
    let out = as_postgres_user(initdb, as_root)
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    let _ = fs::remove_file(&pwfile);
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Writes the wiring's GUCs to `pg_lake.conf`, included from postgresql.conf.
fn write_postgres_conf(pgdata: &Path, wiring: &Wiring) -> Result<(), String> {
    let mut conf = String::from(
        "# Written by pg_lake_local from pg_lake_common::wiring; rewritten at each start.\n",
    );
    conf.push_str("listen_addresses = '127.0.0.1'\n");
    for guc in wiring.postgres_gucs() {
        conf.push_str(&format!("{guc}\n"));
    }
    let target = pgdata.join("pg_lake.conf");
    fs::write(&target, conf).map_err(|e| format!("{}: {e}", target.display()))?;
    let main = pgdata.join("postgresql.conf");
    let text = fs::read_to_string(&main).map_err(|e| format!("{}: {e}", main.display()))?;
    if !text.contains("include_if_exists = 'pg_lake.conf'") {
        fs::write(
            &main,
            format!("{text}\ninclude_if_exists = 'pg_lake.conf'\n"),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn wait_until(
    stop: &AtomicBool,
    limit: Duration,
    what: &str,
    ready: impl Fn() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if stop.load(Ordering::Relaxed) {
            return Err(format!("interrupted while waiting for {what}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not become ready within {}s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
