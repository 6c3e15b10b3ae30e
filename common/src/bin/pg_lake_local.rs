//! Runs the whole appliance on one machine, wired exactly as the operator wires a
//! pod (see `pg_lake_common::wiring`): Postgres with pg_lake, the pgduck_server
//! sidecar on a shared socket directory, and the REST catalog on the same database.
//! Data stays in `--data-dir` between runs; Ctrl-C stops everything cleanly.
//!
//! As in a pod, every child runs as one unprivileged user ([`wiring::NODE_OS_USER`]
//! when started as root, else the invoking user), the socket directory is private to
//! it, Postgres takes peer authentication on the socket and scram-sha-256 on TCP.
//! Children are supervised: each is in its own process group and dies with the
//! launcher (`PR_SET_PDEATHSIG`), readiness only counts what our own child serves
//! (pid files, our own listening socket), and a child that exits is restarted with
//! backoff, or, when it keeps failing, stops the appliance with its last log lines.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_lake_common::contract::{env, StorageEnv};
use pg_lake_common::sql::quote_literal;
use pg_lake_common::wiring::{self, conf_line, ObjectStore, PgduckSettings, Wiring};

const USAGE: &str = include_str!("pg_lake_local.usage");
/// How long a child may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// A child that ran this long before it exited is restarted without counting as a crash loop.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Restarts in a row (each exiting within [`STABLE_AFTER`]) before the appliance gives up.
const MAX_QUICK_RESTARTS: u32 = 5;
const LOG_LINES_SHOWN: usize = 15;

struct Options {
    data_dir: PathBuf,
    warehouse: Option<String>,
    port: u16,
    catalog_port: u16,
    pgduck_port: u16,
}

enum Parsed {
    Run(Options),
    Help,
}

fn parse_options() -> Result<Parsed, String> {
    let cache = std::env::var("PG_LAKE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/pg_lake")
        });
    let mut o = Options {
        data_dir: cache.join("appliance"),
        warehouse: None,
        port: wiring::DEFAULT_POSTGRES_PORT,
        catalog_port: wiring::DEFAULT_CATALOG_PORT,
        pgduck_port: wiring::DEFAULT_PGDUCK_PORT,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(Parsed::Help);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
        let port = |v: &str| {
            v.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{flag}: {v:?} is not a port number (1-65535)"))
        };
        match flag.as_str() {
            "--data-dir" => o.data_dir = absolute(PathBuf::from(value))?,
            "--warehouse" => o.warehouse = Some(value),
            "--port" => o.port = port(&value)?,
            "--catalog-port" => o.catalog_port = port(&value)?,
            "--pgduck-port" => o.pgduck_port = port(&value)?,
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
    }
    Ok(Parsed::Run(o))
}

fn absolute(p: PathBuf) -> Result<PathBuf, String> {
    if p.is_absolute() {
        return Ok(p);
    }
    Ok(std::env::current_dir()
        .map_err(|e| format!("current directory: {e}"))?
        .join(p))
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("pg_lake_local: {msg}");
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

/// An OS user, from the password database.
#[derive(Clone)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl User {
    fn from_passwd(pw: *const libc::passwd) -> Option<User> {
        if pw.is_null() {
            return None;
        }
        // SAFETY: a non-null entry from getpwnam/getpwuid is valid until the next such
        // call; everything is copied out before returning, on this single thread.
        unsafe {
            Some(User {
                name: CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned(),
                uid: (*pw).pw_uid,
                gid: (*pw).pw_gid,
                home: PathBuf::from(CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned()),
            })
        }
    }

    /// Where its processes start: its home, or `/` when it has none.
    fn workdir(&self) -> &Path {
        if self.home.is_dir() {
            &self.home
        } else {
            Path::new("/")
        }
    }

    fn by_name(name: &str) -> Option<User> {
        let c = CString::new(name).ok()?;
        // SAFETY: `c` is a valid NUL-terminated string; see from_passwd.
        Self::from_passwd(unsafe { libc::getpwnam(c.as_ptr()) })
    }

    fn by_uid(uid: u32) -> Option<User> {
        // SAFETY: see from_passwd.
        Self::from_passwd(unsafe { libc::getpwuid(uid) })
    }
}

/// Who runs the children, and who started the launcher (they differ only as root).
struct Users {
    node: User,
    invoker: User,
}

impl Users {
    fn find() -> Result<Users, String> {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let invoker = User::by_uid(uid).ok_or(format!("uid {uid} has no passwd entry"))?;
        let node = if uid == 0 {
            User::by_name(wiring::NODE_OS_USER).ok_or(format!(
                "started as root, but there is no {:?} OS user to run the appliance as \
                 (installing postgresql-15 creates it)",
                wiring::NODE_OS_USER
            ))?
        } else {
            invoker.clone()
        };
        Ok(Users { node, invoker })
    }

    fn switching(&self) -> bool {
        self.node.uid != self.invoker.uid
    }
}

/// What a child is and how the launcher knows it is up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pgduck,
    Postgres,
    Catalog,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pgduck => "pgduck_server",
            Kind::Postgres => "postgres",
            Kind::Catalog => "rest_catalog",
        }
    }

    /// The signal that stops it cleanly (Postgres: fast shutdown), also sent when the
    /// launcher dies.
    fn stop_signal(self) -> libc::c_int {
        match self {
            Kind::Postgres => libc::SIGINT,
            Kind::Pgduck | Kind::Catalog => libc::SIGTERM,
        }
    }
}

/// One supervised child.
struct Service {
    kind: Kind,
    command: Box<dyn Fn() -> Command>,
    log: PathBuf,
    /// Who its log file belongs to, when not the launcher's user.
    owner: Option<User>,
    child: Option<Child>,
    started: Instant,
    ready: bool,
    quick_restarts: u32,
    restart_at: Option<Instant>,
}

/// Everything the supervisor needs to check readiness.
struct Node {
    wiring: Wiring,
    pg_bin: PathBuf,
    pgdata: PathBuf,
    run_dir: PathBuf,
}

impl Node {
    fn pgduck_socket(&self) -> PathBuf {
        self.run_dir
            .join(format!(".s.PGSQL.{}", self.wiring.pgduck_port))
    }

    /// Ready, and served by `pid` itself rather than by some other process.
    fn is_ready(&self, kind: Kind, pid: u32) -> bool {
        match kind {
            Kind::Pgduck => {
                let lock = PathBuf::from(format!("{}.lock", self.pgduck_socket().display()));
                first_line(&lock).as_deref() == Some(&pid.to_string())
                    && std::os::unix::net::UnixStream::connect(self.pgduck_socket()).is_ok()
            }
            Kind::Postgres => {
                first_line(&self.pgdata.join("postmaster.pid")).as_deref() == Some(&pid.to_string())
                    && Command::new(self.pg_bin.join("pg_isready"))
                        .args(["-q", "-h", &self.wiring.socket_dir])
                        .args(["-p", &self.wiring.postgres_port.to_string()])
                        .status()
                        .is_ok_and(|s| s.success())
            }
            Kind::Catalog => {
                listens_on(pid, self.wiring.catalog_port)
                    && http_ok(self.wiring.catalog_port, "/readyz")
            }
        }
    }
}

fn first_line(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_owned()))
}

/// Whether `pid` holds the listening TCP socket on `port` (from /proc).
fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT, st 0A is LISTEN, inode is field 9.
            let listening = f.get(3) == Some(&"0A");
            let on_port = f
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                if let Some(inode) = f.get(9) {
                    inodes.push(format!("socket:[{inode}]"));
                }
            }
        }
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// The last lines of a log, indented, for a message.
fn last_lines(log: &Path) -> String {
    let Ok(mut f) = fs::File::open(log) else {
        return format!("  (no log at {})", log.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
    let mut tail = Vec::new();
    let _ = f.read_to_end(&mut tail);
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.lines().collect();
    let shown = &lines[lines.len().saturating_sub(LOG_LINES_SHOWN)..];
    if shown.is_empty() {
        return format!("  ({} is empty)", log.display());
    }
    shown
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("with status {code}"),
        (None, Some(sig)) => format!("on signal {sig}"),
        _ => "for an unknown reason".into(),
    }
}

impl Service {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = (self.command)();
        let log = open_log(&self.log, self.owner.as_ref())?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            // Its own group: a terminal's Ctrl-C reaches the launcher, which stops the
            // children in order, and stopping a child reaches its own children too.
            .process_group(0);
        let parent = std::process::id();
        let sig = self.kind.stop_signal();
        // SAFETY: only async-signal-safe calls between fork and exec. Runs after the
        // uid/gid switch, which would otherwise clear the parent-death signal.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.kind.name()))?;
        self.child = Some(child);
        self.started = Instant::now();
        self.ready = false;
        Ok(())
    }

    /// The child's exit, once.
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, self.kind.stop_signal()) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().ok().flatten().is_none() {
            eprintln!("{} did not stop within 30s; killing it", self.kind.name());
        }
        // SAFETY: the child's own process group (it leads it): whatever it left behind.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = child.wait();
    }
}

/// The children, stopped in reverse order on drop.
struct Supervisor {
    services: Vec<Service>,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for s in self.services.iter_mut().rev() {
            s.stop();
        }
    }
}

impl Supervisor {
    /// Starts a service and waits until it is ready; an exit first is an error with
    /// its log lines.
    fn start(&mut self, i: usize, node: &Node, stop: &AtomicBool) -> Result<(), String> {
        self.services[i].spawn()?;
        let s = &mut self.services[i];
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = s.exited() {
                return Err(format!(
                    "{} exited {} before it was ready; last lines of {}:\n{}",
                    s.kind.name(),
                    describe(status),
                    s.log.display(),
                    last_lines(&s.log)
                ));
            }
            if s.pid().is_some_and(|pid| node.is_ready(s.kind, pid)) {
                s.ready = true;
                return Ok(());
            }
            if stop.load(Ordering::Relaxed) {
                return Err(format!("interrupted while waiting for {}", s.kind.name()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not become ready within {}s; last lines of {}:\n{}",
                    s.kind.name(),
                    READY_WITHIN.as_secs(),
                    s.log.display(),
                    last_lines(&s.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Watches the children until `stop`: restarts those that exit, with backoff.
    fn supervise(&mut self, node: &Node, stop: &AtomicBool) -> Result<(), String> {
        while !stop.load(Ordering::Relaxed) {
            for s in &mut self.services {
                if let Some(status) = s.exited() {
                    let quick = !s.ready || s.started.elapsed() < STABLE_AFTER;
                    s.quick_restarts = if quick { s.quick_restarts + 1 } else { 1 };
                    let lines = last_lines(&s.log);
                    if s.quick_restarts > MAX_QUICK_RESTARTS {
                        return Err(format!(
                            "{} exited {} and keeps failing ({} restarts in a row); \
                             stopping the appliance. Last lines of {}:\n{lines}",
                            s.kind.name(),
                            describe(status),
                            MAX_QUICK_RESTARTS,
                            s.log.display()
                        ));
                    }
                    let backoff = Duration::from_secs(1 << (s.quick_restarts - 1).min(5));
                    eprintln!(
                        "pg_lake_local: {} exited {}; restarting it in {}s. Last lines of {}:\n{lines}",
                        s.kind.name(),
                        describe(status),
                        backoff.as_secs(),
                        s.log.display()
                    );
                    s.restart_at = Some(Instant::now() + backoff);
                }
                if s.restart_at.is_some_and(|t| Instant::now() >= t) {
                    s.restart_at = None;
                    if let Err(e) = s.spawn() {
                        eprintln!("pg_lake_local: {e}");
                        s.restart_at = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
                if !s.ready && s.pid().is_some_and(|pid| node.is_ready(s.kind, pid)) {
                    s.ready = true;
                    if s.quick_restarts > 0 {
                        eprintln!("pg_lake_local: {} is running again", s.kind.name());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }
}

/// Fails when another process already serves what a child is about to serve: then
/// readiness could be satisfied by a stranger (an orphan of an earlier run, say).
fn check_free(node: &Node) -> Result<(), String> {
    let w = &node.wiring;
    for (port, what, flag) in [
        (w.postgres_port, "Postgres", "--port"),
        (w.catalog_port, "the REST catalog", "--catalog-port"),
    ] {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Err(format!(
                "port {port} on 127.0.0.1, meant for {what}, is taken by another process ({e}); \
                 is another appliance running? Stop it or choose another {flag}"
            ));
        }
    }
    let sock = node.pgduck_socket();
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return Err(format!(
            "{} is served by another process; is another appliance running on {}? \
             Stop it or choose another --pgduck-port",
            sock.display(),
            node.run_dir.display()
        ));
    }
    Ok(())
}

fn run(o: Options) -> Result<(), String> {
    let users = Users::find()?;
    let storage = StorageEnv::from_process_env().map_err(|e| e.to_string())?;
    let dir = o.data_dir.clone();
    let pgdata = dir.join("pgdata");
    let run_dir = dir.join("run");
    let logs = dir.join("logs");
    let cache = dir.join("cache");
    let default_warehouse = dir.join("warehouse");
    claim_data_dir(&dir)?;
    private_dir(&dir, &users, false)?;
    for d in [&run_dir, &logs, &cache, &default_warehouse] {
        private_dir(d, &users, true)?;
    }
    let warehouse = match &o.warehouse {
        Some(w) => w.clone(),
        None => format!("file://{}", default_warehouse.display()),
    };
    let wiring = Wiring {
        socket_dir: run_dir.display().to_string(),
        pgduck_port: o.pgduck_port,
        postgres_port: o.port,
        catalog_port: o.catalog_port,
        object_store: ObjectStore::from_env(warehouse, &storage),
        pgduck: PgduckSettings {
            cache_dir: cache.display().to_string(),
            extensions_dir: std::env::var("PG_LAKE_DUCKDB_EXTENSIONS").ok(),
            ..PgduckSettings::default()
        },
        ..Wiring::default()
    };
    let pg_bin = PathBuf::from(
        std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    );
    let bin_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("cannot locate sibling binaries")?;
    for p in [dir.clone(), bin_dir.join("pgduck_server")] {
        reachable(&p, &users.node)?;
    }
    let node = Node {
        wiring,
        pg_bin,
        pgdata,
        run_dir,
    };
    check_free(&node)?;

    let pgpass = dir.join("pgpass");
    let (password, fresh) = ensure_password(&dir, &pgpass, &users)?;
    let initialised = node.pgdata.join("PG_VERSION").exists();
    if !initialised {
        init_cluster(&node, &password, &users)?;
    }
    write_postgres_conf(&node, &users)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("installing signal handler: {e}"))?;
    }

    let as_node = {
        let node_user = users.node.clone();
        let switching = users.switching();
        move |program: PathBuf| {
            let mut cmd = Command::new(program);
            cmd.current_dir(node_user.workdir())
                .env("HOME", &node_user.home)
                .env("USER", &node_user.name)
                .env("LOGNAME", &node_user.name)
                // Plain text in the log files.
                .env("NO_COLOR", "1");
            if switching {
                // Supplementary groups are dropped with the switch (std calls setgroups).
                cmd.uid(node_user.uid).gid(node_user.gid);
            }
            cmd
        }
    };
    let w = node.wiring.clone();
    let mut catalog_env = w.catalog_env("127.0.0.1", "postgres");
    for (k, v) in catalog_env.iter_mut() {
        if *k == env::CATALOG_LISTEN {
            *v = format!("127.0.0.1:{}", w.catalog_port);
        }
    }
    let pgduck_cmd = {
        let (as_node, w, bin) = (as_node.clone(), w.clone(), bin_dir.join("pgduck_server"));
        move || {
            let mut c = as_node(bin.clone());
            c.args(w.pgduck_args()).envs(w.object_store_env());
            c
        }
    };
    let postgres_cmd = {
        let (as_node, bin, pgdata) = (
            as_node.clone(),
            node.pg_bin.join("postgres"),
            node.pgdata.clone(),
        );
        move || {
            let mut c = as_node(bin.clone());
            c.arg("-D").arg(&pgdata);
            c
        }
    };
    let catalog_cmd = {
        let (as_node, bin, password) = (
            as_node.clone(),
            bin_dir.join("rest_catalog"),
            password.clone(),
        );
        move || {
            let mut c = as_node(bin.clone());
            c.envs(catalog_env.clone())
                .env(env::CATALOG_AUTH, "none")
                .env(env::CATALOG_LOG_FORMAT, "text")
                .env(env::PGPASSWORD, &password);
            c
        }
    };
    let service = |kind: Kind, command: Box<dyn Fn() -> Command>| Service {
        kind,
        command,
        log: logs.join(format!("{}.log", kind.name())),
        owner: users.switching().then(|| users.node.clone()),
        child: None,
        started: Instant::now(),
        ready: false,
        quick_restarts: 0,
        restart_at: None,
    };
    let mut sup = Supervisor {
        services: vec![
            service(Kind::Pgduck, Box::new(pgduck_cmd)),
            service(Kind::Postgres, Box::new(postgres_cmd)),
            service(Kind::Catalog, Box::new(catalog_cmd)),
        ],
    };
    sup.start(0, &node, &stop)?;
    sup.start(1, &node, &stop)?;
    let tcp_conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname={} passfile={}",
        w.postgres_port,
        w.database,
        pgpass.display()
    );
    if initialised && fresh {
        // The password file was lost: the cluster gets the new one.
        psql(
            &node,
            &users,
            &format!("ALTER ROLE postgres PASSWORD {}", quote_literal(&password)),
        )?;
    }
    psql(
        &node,
        &users,
        "CREATE EXTENSION IF NOT EXISTS pg_lake CASCADE",
    )?;
    sup.start(2, &node, &stop)?;

    println!(
        "pg_lake is running. Stop it with Ctrl-C; data stays in {}.",
        dir.display()
    );
    println!();
    println!("  psql \"{tcp_conninfo}\"");
    println!(
        "  psql -h {} -p {} -U postgres {}   (peer authentication, as {})",
        w.socket_dir, w.postgres_port, w.database, users.invoker.name
    );
    println!(
        "  Iceberg REST catalog: http://127.0.0.1:{}  (warehouse {})",
        w.catalog_port, w.object_store.warehouse
    );
    println!(
        "  processes run as {}; password in {}",
        users.node.name,
        pgpass.display()
    );
    println!("  logs: {}", logs.display());
    std::io::stdout().flush().ok();

    sup.supervise(&node, &stop)?;
    println!("stopping…");
    drop(sup);
    Ok(())
}

/// Runs SQL through psql on the socket with peer authentication, as the node's user;
/// the SQL goes on stdin, never into process arguments.
fn psql(node: &Node, users: &Users, sql: &str) -> Result<(), String> {
    let mut cmd = Command::new(node.pg_bin.join("psql"));
    cmd.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        &node.wiring.socket_dir,
    ])
    .args(["-p", &node.wiring.postgres_port.to_string()])
    .args(["-U", "postgres", "-d", &node.wiring.database])
    .env("HOME", &users.node.home)
    .current_dir(users.node.workdir())
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if users.switching() {
        cmd.uid(users.node.uid).gid(users.node.gid);
    }
    let mut child = cmd.spawn().map_err(|e| format!("running psql: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("psql has no stdin")?;
    stdin
        .write_all(sql.as_bytes())
        .map_err(|e| format!("writing to psql: {e}"))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running psql: {e}"))?;
    if !out.status.success() {
        let statement = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        return Err(format!(
            "{statement} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Refuses a `--data-dir` that holds something other than an appliance: the launcher
/// hands what it holds to the node's user.
fn claim_data_dir(dir: &Path) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let known = [
        "pgdata",
        "run",
        "logs",
        "cache",
        "warehouse",
        "pgpass",
        "superuser.password",
    ];
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !names.is_empty() && !names.iter().any(|n| n == "pgdata") {
        if let Some(other) = names.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(format!(
                "--data-dir {} holds {other:?} and no appliance (no pgdata); \
                 choose a new or empty directory",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// A directory only the node's user may enter (mode 0700), owned by it, with all it
/// holds when `recursive` (earlier versions left root-owned files behind).
fn private_dir(d: &Path, users: &Users, recursive: bool) -> Result<(), String> {
    fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    if users.switching() {
        if !recursive {
            std::os::unix::fs::lchown(d, Some(users.node.uid), Some(users.node.gid))
                .map_err(|e| format!("handing {} to {}: {e}", d.display(), users.node.name))?;
        } else {
            chown_tree(d, &users.node)?;
        }
    }
    fs::set_permissions(d, fs::Permissions::from_mode(wiring::SOCKET_DIR_MODE))
        .map_err(|e| format!("{}: {e}", d.display()))
}

/// Hands `p` and everything below it (not following links) to `user`.
fn chown_tree(p: &Path, user: &User) -> Result<(), String> {
    let meta = fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if meta.uid() != user.uid || meta.gid() != user.gid {
        std::os::unix::fs::lchown(p, Some(user.uid), Some(user.gid))
            .map_err(|e| format!("handing {} to {}: {e}", p.display(), user.name))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", p.display()))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// Fails with a clear message when `user` cannot traverse to `p` (e.g. a home
/// directory of mode 0700 above the data directory).
fn reachable(p: &Path, user: &User) -> Result<(), String> {
    let mut dir = PathBuf::new();
    for part in p.parent().into_iter().flat_map(Path::components) {
        dir.push(part);
        let m = fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let bit = if m.uid() == user.uid {
            0o100
        } else if m.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if m.mode() & bit == 0 {
            return Err(format!(
                "the {} user, which runs the appliance, cannot reach {}: {} has mode {:o}; \
                 allow it through (chmod o+x {}) or use a --data-dir and build directory it can reach",
                user.name,
                p.display(),
                dir.display(),
                m.mode() & 0o7777,
                dir.display()
            ));
        }
    }
    Ok(())
}

fn open_log(path: &Path, owner: Option<&User>) -> Result<fs::File, String> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Older versions made the logs world-writable.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(user) = owner {
        chown_tree(path, user)?;
    }
    Ok(f)
}

/// The superuser password, generated once and kept in a libpq password file that only
/// the invoking user can read; `true` when it was generated now.
fn ensure_password(dir: &Path, pgpass: &Path, users: &Users) -> Result<(String, bool), String> {
    let line_of = |pw: &str| format!("*:*:*:postgres:{pw}\n");
    let (password, fresh) = if let Some(pw) = fs::read_to_string(pgpass).ok().and_then(|t| {
        t.lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .map(str::to_owned)
    }) {
        (pw, false)
    } else if let Some(pw) = first_line(&dir.join("superuser.password")) {
        // Where earlier versions kept it.
        let _ = fs::remove_file(dir.join("superuser.password"));
        (pw, false)
    } else {
        let mut bytes = [0u8; 18];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| format!("reading /dev/urandom: {e}"))?;
        (bytes.iter().map(|b| format!("{b:02x}")).collect(), true)
    };
    let _ = fs::remove_file(pgpass);
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(pgpass)
        .map_err(|e| format!("{}: {e}", pgpass.display()))?;
    f.write_all(line_of(&password).as_bytes())
        .map_err(|e| format!("{}: {e}", pgpass.display()))?;
    std::os::unix::fs::lchown(pgpass, Some(users.invoker.uid), Some(users.invoker.gid))
        .map_err(|e| format!("{}: {e}", pgpass.display()))?;
    Ok((password, fresh))
}

fn init_cluster(node: &Node, password: &str, users: &Users) -> Result<(), String> {
    // The password reaches initdb through a file only the node's user can read.
    let pwfile = node.run_dir.join("initdb.pw");
    let _ = fs::remove_file(&pwfile);
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&pwfile)
        .and_then(|mut f| f.write_all(password.as_bytes()))
        .map_err(|e| format!("{}: {e}", pwfile.display()))?;
    if users.switching() {
        chown_tree(&pwfile, &users.node)?;
    }
    let mut initdb = Command::new(node.pg_bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&node.pgdata)
        .args([
            "-U",
            "postgres",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(users.node.workdir())
        .env("HOME", &users.node.home);
    if users.switching() {
        initdb.uid(users.node.uid).gid(users.node.gid);
    }
    let out = initdb.output().map_err(|e| format!("running initdb: {e}"));
    let _ = fs::remove_file(&pwfile);
    let out = out?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Writes the wiring's GUCs to `pg_lake.conf` (included from postgresql.conf) and the
/// authentication rules, both rewritten at each start so that data directories of
/// earlier versions (trust on the socket) get them too.
fn write_postgres_conf(node: &Node, users: &Users) -> Result<(), String> {
    let pgdata = &node.pgdata;
    let mut conf = String::from(
        "# Written by pg_lake_local from pg_lake_common::wiring; rewritten at each start.\n",
    );
    conf.push_str(&conf_line("listen_addresses", "127.0.0.1"));
    conf.push('\n');
    conf.push_str("unix_socket_permissions = 0700\n");
    conf.push_str(&conf_line("password_encryption", "scram-sha-256"));
    conf.push('\n');
    for guc in node.wiring.postgres_gucs() {
        conf.push_str(&format!("{guc}\n"));
    }
    write_node_file(&pgdata.join("pg_lake.conf"), &conf, users)?;
    let hba = "\
# Written by pg_lake_local at each start: peer on the socket (see pg_ident.conf),
# passwords (scram-sha-256) on TCP, nothing else.
local all all                 peer map=pg_lake
host  all all 127.0.0.1/32    scram-sha-256
host  all all ::1/128         scram-sha-256
";
    write_node_file(&pgdata.join("pg_hba.conf"), hba, users)?;
    let mut ident = String::from(
        "# Written by pg_lake_local at each start: every OS user is the role of its own\n\
         # name, and the appliance's users may also log in as postgres.\n\
         pg_lake /^(.*)$ \\1\n",
    );
    for name in [&users.node.name, &users.invoker.name] {
        ident.push_str(&format!("pg_lake {name} postgres\n"));
    }
    write_node_file(&pgdata.join("pg_ident.conf"), &ident, users)?;
    let main = pgdata.join("postgresql.conf");
    let text = fs::read_to_string(&main).map_err(|e| format!("{}: {e}", main.display()))?;
    if !text.contains("include_if_exists = 'pg_lake.conf'") {
        write_node_file(
            &main,
            &format!("{text}\ninclude_if_exists = 'pg_lake.conf'\n"),
            users,
        )?;
    }
    Ok(())
}

fn write_node_file(path: &Path, text: &str, users: &Users) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if users.switching() {
        chown_tree(path, &users.node)?;
    }
    Ok(())
}
