//! The DuckDB side: one database per process, one connection per client session,
//! and the registry that lets cancel requests interrupt a session's query.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use duckdb::{ffi, Connection};
use tracing::{info, warn};

use crate::client_secrets::ServerSecrets;
use crate::config::Config;
use crate::credentials::StorageEnv;
use crate::error::{QueryError, ServerError};
use crate::file_cache::FileCache;
use crate::sql::Reply;
use crate::types::{kind_from_type_id, result_columns, Column, Description, Kind, PgType};
use pg_lake_common::sql::quote_literal as literal;

/// What `--cache_dir` holds of remote files when `--cache_size` does not say.
const DEFAULT_FILE_CACHE_SIZE: u64 = 10 * 1000 * 1000 * 1000;

/// The process-wide DuckDB database and the sessions open on it.
pub struct Engine {
    /// Connection kept only to clone new sessions from.
    root: Mutex<Connection>,
    /// Raw handle of the same database, for the describe-only connections.
    raw_db: ffi::duckdb_database,
    sessions: Mutex<HashMap<i32, Registered>>,
    next_pid: AtomicI32,
    active: AtomicUsize,
    max_clients: usize,
    /// Local copies of remote files, when `--cache_dir` is set.
    file_cache: Option<Arc<FileCache>>,
    /// The GCS access token in use (see [`crate::gcp`]), for listings of our own.
    pub gcs_token: crate::etags::GcsToken,
    /// The secrets installed from the environment, which clients may not touch.
    server_secrets: Mutex<ServerSecrets>,
}

// SAFETY: duckdb_database is a thread-safe handle (DuckDB's DatabaseInstance); we only
// use it to open new connections, which DuckDB allows from any thread.
unsafe impl Send for Engine {}
// SAFETY: see above; all other fields are Sync.
unsafe impl Sync for Engine {}

struct Registered {
    secret: i32,
    running: Arc<Mutex<Running>>,
}

/// Whether the session is inside a statement. Cancel requests only interrupt a
/// running statement: DuckDB keeps an interrupt that arrives between statements and
/// fails the next one with it, while Postgres ignores such cancels.
#[derive(Default)]
struct Running {
    interrupt: Option<Arc<duckdb::InterruptHandle>>,
    cancel_requested: bool,
}

impl Engine {
    /// Opens the database, applies the configuration, the object-storage credentials
    /// and the init file.
    pub fn open(config: &Config, storage: &StorageEnv) -> Result<Arc<Engine>, ServerError> {
        let path = match &config.duckdb_database_file_path {
            Some(p) => p.to_string_lossy().into_owned(),
            None => ":memory:".to_owned(),
        };
        let raw_db = open_raw(&path, config)?;
        // SAFETY: raw_db was just opened successfully and stays open for the process
        // lifetime (Engine never closes it); open_from_raw does not take ownership.
        let root = unsafe { Connection::open_from_raw(raw_db) }
            .map_err(|e| ServerError::Startup(e.to_string()))?;

        let setup = |sql: &str, what: &str| {
            root.execute_batch(sql).map_err(|e| {
                ServerError::Startup(format!("{what}: {}", QueryError::from(e).message))
            })
        };
        setup("SET GLOBAL TimeZone = 'UTC'", "setting TimeZone")?;
        if let Some(m) = &config.memory_limit {
            let limit = crate::config::memory_limit_setting(m)
                .map_err(|e| ServerError::Config(format!("--memory_limit {m:?}: {e}")))?;
            setup(
                &format!("SET GLOBAL memory_limit = {}", literal(&limit)),
                "--memory_limit",
            )?;
        }
        if let Some(t) = config.threads {
            setup(&format!("SET GLOBAL threads = {t}"), "--threads")?;
        }
        let cache_bytes = config
            .cache_size
            .as_deref()
            .map(|s| crate::config::parse_size(s, false))
            .transpose()
            .map_err(ServerError::Config)?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                ServerError::io(format!("creating --cache_dir {}", dir.display()), e)
            })?;
            let tmp = dir.join("spill");
            setup(
                &format!(
                    "SET GLOBAL temp_directory = {}",
                    literal(&tmp.to_string_lossy())
                ),
                "--cache_dir",
            )?;
            if let Some(bytes) = cache_bytes {
                // DuckDB wants a unit; the flag also takes plain bytes.
                setup(
                    &format!(
                        "SET GLOBAL max_temp_directory_size = '{}KiB'",
                        bytes.div_ceil(1024)
                    ),
                    "--cache_size",
                )?;
            }
        }
        setup(
            "SET GLOBAL enable_external_file_cache = true",
            "enabling the file cache",
        )?;
        let gcs_token = crate::etags::GcsToken::default();
        let lister = crate::etags::Lister::new(
            crate::etags::Stores::new(storage),
            tokio::runtime::Handle::current(),
            gcs_token.clone(),
        );
        let cache_slot = Arc::new(std::sync::OnceLock::new());
        let deleter = crate::delete_file::Deleter {
            lister: lister.clone(),
            cache: cache_slot.clone(),
        };
        crate::delete_file::register(&root, deleter).map_err(|e| {
            ServerError::Startup(format!(
                "registering {}: {}",
                crate::delete_file::FUNCTION,
                QueryError::from(e).message
            ))
        })?;
        let writer = crate::write_file::Writer {
            lister: lister.clone(),
            cache: cache_slot.clone(),
        };
        crate::write_file::register(&root, writer).map_err(|e| {
            ServerError::Startup(format!(
                "registering {}: {}",
                crate::write_file::FUNCTION,
                QueryError::from(e).message
            ))
        })?;
        crate::json_depth::register(&root).map_err(|e| {
            ServerError::Startup(format!(
                "registering {}: {}",
                crate::json_depth::FUNCTION,
                QueryError::from(e).message
            ))
        })?;
        crate::etags::register(&root, lister).map_err(|e| {
            ServerError::Startup(format!(
                "registering {}: {}",
                crate::etags::FUNCTION,
                QueryError::from(e).message
            ))
        })?;
        let mut server_secrets = ServerSecrets::default();
        for stmt in storage.secrets() {
            server_secrets.add_created(&stmt.sql);
            root.execute_batch(&stmt.sql).map_err(|e| {
                // DuckDB may echo the statement; never let a key reach a log.
                ServerError::Startup(format!(
                    "creating the {} secret from the environment: {}",
                    stmt.name,
                    stmt.redact(&QueryError::from(e).message)
                ))
            })?;
            info!(
                secret = stmt.name,
                "object storage credentials configured from the environment"
            );
        }
        if let Some(init) = &config.init_file_path {
            let sql = std::fs::read_to_string(init).map_err(|e| {
                ServerError::io(format!("reading --init_file_path {}", init.display()), e)
            })?;
            root.execute_batch(&sql).map_err(|e| {
                ServerError::Startup(format!(
                    "--init_file_path {}: {}",
                    init.display(),
                    QueryError::from(e).message
                ))
            })?;
            info!(file = %init.display(), "init file applied");
        }
        let file_cache = match &config.cache_dir {
            Some(dir) => {
                let limit = cache_bytes.unwrap_or(DEFAULT_FILE_CACHE_SIZE);
                let clone = || {
                    root.try_clone()
                        .map_err(|e| ServerError::Startup(format!("file cache: {e}")))
                };
                let cache = FileCache::open(dir, limit, clone()?, clone()?)
                    .map_err(|e| ServerError::Startup(format!("file cache: {e}")))?;
                info!(dir = %dir.display(), limit_bytes = limit, "file cache enabled");
                let _ = cache_slot.set(cache.clone());
                Some(cache)
            }
            None => None,
        };
        Ok(Arc::new(Engine {
            file_cache,
            server_secrets: Mutex::new(server_secrets),
            gcs_token,
            root: Mutex::new(root),
            raw_db,
            sessions: Mutex::new(HashMap::new()),
            next_pid: AtomicI32::new(1),
            active: AtomicUsize::new(0),
            max_clients: config.max_clients,
        }))
    }

    /// Opens a session: a new DuckDB connection, registered for cancel requests.
    pub fn open_session(self: &Arc<Self>) -> Result<Arc<Session>, QueryError> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max_clients {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(QueryError::new("53300", "sorry, too many clients already"));
        }
        let conn = match self.root.lock().expect("root connection lock").try_clone() {
            Ok(c) => c,
            Err(e) => {
                self.active.fetch_sub(1, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        let describe = DescribeConnection::open(self.raw_db);
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let secret: i32 = rand::random();
        let running = Arc::new(Mutex::new(Running::default()));
        self.sessions.lock().expect("session registry lock").insert(
            pid,
            Registered {
                secret,
                running: running.clone(),
            },
        );
        Ok(Arc::new(Session {
            engine: self.clone(),
            pid,
            secret,
            conn: Mutex::new(conn),
            describe: Mutex::new(describe),
            in_transaction: AtomicBool::new(false),
            running,
        }))
    }

    /// Installs (or renews) one of the server's own secrets, which clients may then
    /// not replace. Blocks: call it off the async workers.
    pub fn install_secret(&self, sql: &str) -> Result<(), QueryError> {
        self.root
            .lock()
            .expect("root connection lock")
            .execute_batch(sql)
            .map_err(QueryError::from)?;
        self.server_secrets
            .lock()
            .expect("server secrets lock")
            .add_created(sql);
        Ok(())
    }

    /// Interrupts the running query of the session with this key, if any.
    pub fn cancel(&self, pid: i32, secret: i32) -> bool {
        let sessions = self.sessions.lock().expect("session registry lock");
        match sessions.get(&pid) {
            Some(r) if r.secret == secret => {
                let mut running = r.running.lock().expect("running lock");
                if let Some(handle) = &running.interrupt {
                    handle.interrupt();
                    running.cancel_requested = true;
                }
                true
            }
            _ => false,
        }
    }

    /// Interrupts every running query (shutdown).
    pub fn cancel_all(&self) {
        for r in self
            .sessions
            .lock()
            .expect("session registry lock")
            .values()
        {
            if let Some(handle) = &r.running.lock().expect("running lock").interrupt {
                handle.interrupt();
            }
        }
    }

    pub fn active_sessions(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

/// One client's DuckDB connection. Dropping it unregisters the session.
pub struct Session {
    engine: Arc<Engine>,
    pub pid: i32,
    pub secret: i32,
    pub conn: Mutex<Connection>,
    describe: Mutex<Option<DescribeConnection>>,
    /// Whether an explicit transaction is open (DuckDB's C API does not say).
    in_transaction: AtomicBool,
    running: Arc<Mutex<Running>>,
}

impl Session {
    /// Runs `f` as one statement on the session's connection: cancel requests reach
    /// it only while it runs, and one that arrives too late to stop it is absorbed
    /// so it cannot fail the next statement.
    pub fn run_statement<T>(
        &self,
        f: impl FnOnce(&Connection) -> T,
        succeeded: impl Fn(&T) -> bool,
    ) -> T {
        let conn = match self.conn.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        *self.running.lock().expect("running lock") = Running {
            interrupt: Some(conn.interrupt_handle()),
            cancel_requested: false,
        };
        let outcome = f(&conn);
        let mut running = self.running.lock().expect("running lock");
        if running.cancel_requested && succeeded(&outcome) {
            // The interrupt is still pending in DuckDB; let a no-op statement take it.
            let _ = conn.execute_batch("SELECT 1");
        }
        *running = Running::default();
        outcome
    }

    /// Rewrites `sql` to read cached local copies of remote files; the pins keep them
    /// on disk until dropped (after the statement).
    pub fn use_file_cache(&self, sql: &str) -> (Option<String>, Option<crate::file_cache::Pins>) {
        match &self.engine.file_cache {
            Some(cache) => cache.rewrite(sql),
            None => (None, None),
        }
    }

    /// Refuses a client statement that would replace, shadow or drop one of the
    /// server's own secrets (see [`crate::client_secrets`]).
    pub fn check_secrets(&self, sql: &str) -> Result<(), QueryError> {
        self.engine
            .server_secrets
            .lock()
            .expect("server secrets lock")
            .check(sql)
    }

    pub fn in_transaction(&self) -> bool {
        self.in_transaction.load(Ordering::SeqCst)
    }

    /// Updates and returns whether a transaction is open after a statement ran.
    pub fn track_transaction(&self, reply: &Reply, succeeded: bool) -> bool {
        let open = match reply {
            Reply::Command(tag) if tag == "BEGIN" && succeeded => true,
            Reply::Command(tag) if tag == "COMMIT" || tag == "ROLLBACK" => false,
            _ => self.in_transaction.load(Ordering::SeqCst),
        };
        self.in_transaction.store(open, Ordering::SeqCst);
        open
    }

    /// Parameter and result types of `sql` as DuckDB infers them. Statements that
    /// only the session's own state can resolve (temp tables, its search_path) are
    /// described by running them on the session with NULL parameters and LIMIT 0.
    pub fn describe(&self, sql: &str) -> Option<Description> {
        if let Some(d) = self.describe.lock().ok()?.as_ref()?.describe(sql) {
            return Some(d);
        }
        self.describe_bound(sql, None)
    }

    /// Describes `sql` by running it on the session with LIMIT 0, with `params` (a
    /// portal's) or else a value for every parameter: text, which is how a parameter
    /// without a declared type is bound (DuckDB cannot prepare `SELECT $1 || $2` alone,
    /// and with NULLs it reports the result as INTEGER while text values give VARCHAR,
    /// as Postgres resolves unknown parameters as text), and NULL where text does not fit
    /// (`WHERE id = $1`).
    pub fn describe_bound(
        &self,
        sql: &str,
        params: Option<&[duckdb::types::Value]>,
    ) -> Option<Description> {
        let conn = self.conn.lock().ok()?;
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM ({sql}) AS described LIMIT 0"))
            .ok()?;
        let n = stmt.parameter_count();
        let texts = vec![duckdb::types::Value::Text(String::new()); n];
        let nulls = vec![duckdb::types::Value::Null; n];
        let candidates: Vec<&[duckdb::types::Value]> = match params {
            Some(p) => vec![p],
            None if n == 0 => vec![&nulls],
            None => vec![&texts, &nulls],
        };
        let executed = candidates.into_iter().any(|values| {
            stmt.stream_arrow(duckdb::params_from_iter(values.iter()))
                .map(drop)
                .is_ok()
        });
        if !executed {
            return None;
        }
        let columns = result_columns(&stmt);
        while let Ok(Some(_)) = stmt.step() {}
        Some(Description {
            params: vec![Kind::Text.into(); n],
            columns,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.engine
            .sessions
            .lock()
            .expect("session registry lock")
            .remove(&self.pid);
        self.engine.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A raw connection used only to prepare statements and read their parameter
/// types, which the duckdb crate does not expose.
struct DescribeConnection(ffi::duckdb_connection);

// SAFETY: a duckdb_connection may be used from any thread as long as it is not used
// concurrently; Session guards it with a Mutex.
unsafe impl Send for DescribeConnection {}

impl DescribeConnection {
    fn open(db: ffi::duckdb_database) -> Option<Self> {
        let mut con: ffi::duckdb_connection = std::ptr::null_mut();
        // SAFETY: db is a live database handle; con is an out-pointer DuckDB fills.
        let rc = unsafe { ffi::duckdb_connect(db, &mut con) };
        (rc == ffi::DuckDBSuccess).then_some(DescribeConnection(con))
    }

    fn describe(&self, sql: &str) -> Option<Description> {
        let c_sql = CString::new(sql).ok()?;
        let mut stmt: ffi::duckdb_prepared_statement = std::ptr::null_mut();
        // SAFETY: self.0 is a live connection; stmt is an out-pointer that is destroyed
        // below whether or not preparing succeeded; names and logical types returned by
        // DuckDB are copied and freed before the statement is destroyed.
        unsafe {
            let rc = ffi::duckdb_prepare(self.0, c_sql.as_ptr(), &mut stmt);
            // A statement DuckDB cannot bind before its parameters are known (a table
            // function taking one, e.g. read_csv($1)) reports one column of an unknown
            // type: leave it to the session path, which binds it with NULLs.
            let unbound = rc == ffi::DuckDBSuccess
                && (0..ffi::duckdb_prepared_statement_column_count(stmt)).any(|i| {
                    ffi::duckdb_prepared_statement_column_type(stmt, i)
                        == ffi::DUCKDB_TYPE_DUCKDB_TYPE_INVALID
                });
            let description = (rc == ffi::DuckDBSuccess && !unbound).then(|| {
                let params = (1..=ffi::duckdb_nparams(stmt))
                    .map(|i| kind_from_type_id(ffi::duckdb_param_type(stmt, i)).into())
                    .collect();
                let columns = (0..ffi::duckdb_prepared_statement_column_count(stmt))
                    .map(|i| {
                        let name_ptr = ffi::duckdb_prepared_statement_column_name(stmt, i);
                        let name = std::ffi::CStr::from_ptr(name_ptr)
                            .to_string_lossy()
                            .into_owned();
                        ffi::duckdb_free(name_ptr as *mut _);
                        let mut logical =
                            ffi::duckdb_prepared_statement_column_logical_type(stmt, i);
                        let ty = PgType::from_raw_duckdb(logical);
                        ffi::duckdb_destroy_logical_type(&mut logical);
                        Column { name, ty }
                    })
                    .collect();
                Description { params, columns }
            });
            ffi::duckdb_destroy_prepare(&mut stmt);
            description
        }
    }
}

impl Drop for DescribeConnection {
    fn drop(&mut self) {
        // SAFETY: self.0 was opened by duckdb_connect and is disconnected exactly once.
        unsafe { ffi::duckdb_disconnect(&mut self.0) };
    }
}

fn open_raw(path: &str, config: &Config) -> Result<ffi::duckdb_database, ServerError> {
    let mut options: Vec<(&str, String)> = vec![
        ("autoinstall_known_extensions", "false".into()),
        ("autoload_known_extensions", "true".into()),
    ];
    if let Some(dir) = &config.extensions_dir {
        options.push(("extension_directory", dir.to_string_lossy().into_owned()));
    }
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| ServerError::Config(format!("{s:?} contains a NUL byte")))
    };
    let c_path = to_c(path)?;
    let mut cfg: ffi::duckdb_config = std::ptr::null_mut();
    let mut db: ffi::duckdb_database = std::ptr::null_mut();
    let mut err: *mut std::os::raw::c_char = std::ptr::null_mut();
    // SAFETY: all pointers are out-pointers or NUL-terminated strings that outlive the
    // calls; the config is destroyed after opening and the error string freed.
    unsafe {
        if ffi::duckdb_create_config(&mut cfg) != ffi::DuckDBSuccess {
            return Err(ServerError::Startup(
                "cannot allocate a DuckDB config".into(),
            ));
        }
        for (k, v) in &options {
            let (ck, cv) = (to_c(k)?, to_c(v)?);
            if ffi::duckdb_set_config(cfg, ck.as_ptr(), cv.as_ptr()) != ffi::DuckDBSuccess {
                ffi::duckdb_destroy_config(&mut cfg);
                return Err(ServerError::Startup(format!(
                    "DuckDB rejected option {k}={v}"
                )));
            }
        }
        let rc = ffi::duckdb_open_ext(c_path.as_ptr(), &mut db, cfg, &mut err);
        ffi::duckdb_destroy_config(&mut cfg);
        if rc != ffi::DuckDBSuccess {
            let msg = if err.is_null() {
                "unknown error".to_owned()
            } else {
                let m = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
                ffi::duckdb_free(err.cast());
                m
            };
            return Err(ServerError::Startup(format!(
                "opening database {path}: {msg}"
            )));
        }
    }
    if path != ":memory:" {
        info!(path, "opened DuckDB database file");
    } else {
        warn!("DuckDB database is in memory: tables created in it are lost at exit");
    }
    Ok(db)
}
