//! Shared helpers for the integration tests: the MariaDB sandbox, throwaway databases, table
//! checksums and the `archiver` executable.
//!
//! Everything here is synchronous so that tests stay plain `#[test]` functions: each [`TestDb`]
//! owns a small current-thread tokio runtime and one `mysql_async` connection, and blocks on it.
//! A test that wants async code of its own can build its own runtime and connect with
//! [`TestDb::opts`].
//!
//! A test that needs MariaDB and cannot get one FAILS (panics with the reason); it never skips.
//! [`sandbox`] reads the connection settings from the environment that `tools/test` exports
//! (`tools/sandbox env`), falls back to the sandbox defaults, and starts the sandbox with
//! `tools/sandbox start` when nothing answers on its port.
//!
//! **Server lifecycle and parallel tests.** Test threads run in parallel and share one server.
//! A process-wide `RwLock` ([`server_lifecycle_lock`]) keeps a test that kills or restarts the
//! server away from all others: [`Sandbox::fresh_database`] takes the lock *shared* and the
//! returned [`TestDb`] holds it until dropped; [`Sandbox::exclusive`] takes it *exclusively* and
//! returns an [`ExclusiveServer`], the only handle on which killing and restarting is meant to
//! happen (its own `fresh_database` does not take the lock again). A test that talks to the
//! server without a `TestDb` (e.g. only through `archiver`) holds [`shared_server`] instead.
//! The shared hold is re-entrant per thread (a test may own several `TestDb`s), and a thread
//! holding `exclusive()` needs no shared hold; asking for `exclusive()` while the same thread
//! holds a `TestDb` panics instead of deadlocking. `TestDb` is therefore not `Send`: a helper
//! thread (e.g. a concurrent writer) connects with [`TestDb::opts`] on its own.
//!
//! ```ignore
//! let db = common::sandbox().fresh_database("e2e");
//! db.exec("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)");
//! let before = db.checksum("t");
//! let out = common::archiver_cmd().args(["run", "--config", path]).output().unwrap();
//! assert_eq!(db.checksum_union("t", "t_archive"), before);
//!
//! // crash test
//! let server = common::sandbox().exclusive();
//! let db = server.fresh_database("crash");
//! server.kill_server();
//! server.start_server();
//! ```
//!
//! The checksum is the one `tools/checksum` computes (same SQL, see there): row count, BIT_XOR
//! of the first 64 bits of MD5 of each row's rendering, and SUM of CRC32 of it. The checksum of
//! a union is the combination of the parts, so `checksum_union(source, archive) ==
//! checksum(original)` proves nothing was lost or duplicated.

#![allow(dead_code)]

#[cfg(test)]
mod smoke;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{Duration, Instant};

use mysql_async::prelude::{FromRow, FromValue, Queryable};

/// Port of the sandbox when `ARCHIVER_SANDBOX_PORT` is unset (same default as tools/sandbox).
pub const SANDBOX_PORT_DEFAULT: u16 = 3407;
/// Password of the sandbox's `archiver` user (same as tools/sandbox).
pub const SANDBOX_PASSWORD_DEFAULT: &str = "archiver-pw";
/// Database the sandbox creates for tests (same as tools/sandbox).
pub const SANDBOX_DATABASE: &str = "archiver_test";
/// How long a helper waits for the server to accept connections after (re)starting it.
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root (where `Cargo.toml` and `tools/` live).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The process-wide lock that separates server-killing tests from all others. Normal tests hold
/// it shared (via [`TestDb`] or [`shared_server`]); [`Sandbox::exclusive`] holds it exclusively.
pub fn server_lifecycle_lock() -> &'static RwLock<()> {
    static LOCK: RwLock<()> = RwLock::new(());
    &LOCK
}

/// This thread's hold on the lifecycle lock.
#[derive(Default)]
struct LockState {
    /// Live [`SharedServer`] tokens of this thread.
    shared_depth: usize,
    /// The read guard, held while `shared_depth > 0` (unless `exclusive`).
    shared_guard: Option<RwLockReadGuard<'static, ()>>,
    /// This thread holds the write lock (an [`ExclusiveServer`] is alive).
    exclusive: bool,
}

thread_local! {
    static LOCK_STATE: RefCell<LockState> = RefCell::new(LockState::default());
}

/// A shared hold on the lifecycle lock: the server will not be killed by another test while it
/// lives. Re-entrant within a thread; not `Send` (it is bookkept per thread).
pub struct SharedServer {
    /// Keeps the token on the thread that counted it.
    _not_send: PhantomData<*const ()>,
}

/// Holds the lifecycle lock shared (see [`SharedServer`]). A panic in another test does not
/// poison it for everyone else.
pub fn shared_server() -> SharedServer {
    LOCK_STATE.with(|state| {
        let mut state = state.borrow_mut();
        if !state.exclusive && state.shared_depth == 0 {
            state.shared_guard = Some(
                server_lifecycle_lock()
                    .read()
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
        state.shared_depth += 1;
    });
    SharedServer {
        _not_send: PhantomData,
    }
}

impl Drop for SharedServer {
    fn drop(&mut self) {
        LOCK_STATE.with(|state| {
            let mut state = state.borrow_mut();
            state.shared_depth -= 1;
            if state.shared_depth == 0 {
                state.shared_guard = None;
            }
        });
    }
}

fn exclusive_guard() -> RwLockWriteGuard<'static, ()> {
    LOCK_STATE.with(|state| {
        let state = state.borrow();
        assert!(
            state.shared_depth == 0,
            "exclusive() while this thread holds a TestDb or shared_server(): drop them first \
             (or create the databases from the ExclusiveServer), or this test deadlocks"
        );
        assert!(!state.exclusive, "exclusive() twice in one thread");
    });
    let guard = server_lifecycle_lock()
        .write()
        .unwrap_or_else(|e| e.into_inner());
    LOCK_STATE.with(|state| state.borrow_mut().exclusive = true);
    guard
}

/// Which of `tools/sandbox`'s two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// The main server, in the system's time zone.
    Main,
    /// The second server, in America/New_York, with a binary log: the two-server tests.
    Archive,
    /// A replica of `Archive` (databases named `t_repl_*` only): the throttle tests.
    Replica,
}

impl Instance {
    /// Its `ARCHIVER_SANDBOX_INSTANCE` name.
    fn name(self) -> &'static str {
        match self {
            Instance::Main => "main",
            Instance::Archive => "archive",
            Instance::Replica => "replica",
        }
    }

    /// The suffix of its environment variables (`ARCHIVER_SANDBOX2_PORT`, ...).
    fn suffix(self) -> &'static str {
        match self {
            Instance::Main => "",
            Instance::Archive => "2",
            Instance::Replica => "3",
        }
    }

    /// Its port when nothing says otherwise (same defaults as tools/sandbox).
    fn default_port(self) -> u16 {
        match self {
            Instance::Main => SANDBOX_PORT_DEFAULT,
            Instance::Archive => ARCHIVE_SANDBOX_PORT_DEFAULT,
            Instance::Replica => REPLICA_SANDBOX_PORT_DEFAULT,
        }
    }
}

/// Port of the archive sandbox when `ARCHIVER_SANDBOX2_PORT` is unset (same as tools/sandbox).
pub const ARCHIVE_SANDBOX_PORT_DEFAULT: u16 = 3417;
/// Port of the replica sandbox when `ARCHIVER_SANDBOX3_PORT` is unset (same as tools/sandbox).
pub const REPLICA_SANDBOX_PORT_DEFAULT: u16 = 3447;

/// Connection settings of a sandbox server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Which server.
    instance: Instance,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// `mysql://archiver@127.0.0.1:PORT/archiver_test`, no password inside.
    url: String,
    /// Password of the URL's user.
    password: String,
}

/// Returns the sandbox, starting it if nothing answers on its port. Panics (failing the test)
/// if it cannot be reached or started.
pub fn sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    started(
        SANDBOX
            .get_or_init(|| sandbox_from_env(Instance::Main))
            .clone(),
    )
}

/// Returns the second sandbox server (another `mariadbd`, another port, time zone
/// America/New_York, a binary log), starting it if nothing answers on its port. The lifecycle
/// lock is one for both servers.
pub fn archive_sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    started(
        SANDBOX
            .get_or_init(|| sandbox_from_env(Instance::Archive))
            .clone(),
    )
}

/// Returns the replica sandbox: a third `mariadbd` replicating from [`archive_sandbox`] (its
/// primary, started first) over 127.0.0.1, which applies only databases named `t_repl_*`
/// (create them with `archive_sandbox().fresh_database("repl_...")`). Started if nothing
/// answers on its port. The lifecycle lock is one for all servers.
pub fn replica_sandbox() -> Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    archive_sandbox();
    started(
        SANDBOX
            .get_or_init(|| sandbox_from_env(Instance::Replica))
            .clone(),
    )
}

/// Starts `sandbox` if nothing answers on its port, unless a test holds the servers exclusively.
fn started(sandbox: Sandbox) -> Sandbox {
    // Start (or check) once per process under a mutex, so parallel first calls do not race.
    static START: Mutex<()> = Mutex::new(());
    // While a test holds the server exclusively (it may have killed it on purpose), leave the
    // server alone: that test restarts it when done, and our TestDb waits for that.
    let quiet = match server_lifecycle_lock().try_read() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    if quiet.is_some() {
        let _start = START.lock().unwrap_or_else(|e| e.into_inner());
        if !sandbox.is_listening() {
            sandbox.run_tool("start");
            sandbox.wait_ready();
        }
    }
    sandbox
}

/// Reads the settings from the variables `tools/sandbox env` prints (exported by tools/test),
/// falling back to running `tools/sandbox env` itself.
fn sandbox_from_env(instance: Instance) -> Sandbox {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let s = instance.suffix();
    let (port_var, url_var, password_var) = (
        format!("ARCHIVER_SANDBOX{s}_PORT"),
        format!("ARCHIVER_TEST_MYSQL_URL{s}"),
        format!("ARCHIVER_TEST_PASSWORD{s}"),
    );
    let (mut port, mut url, mut password) = (var(&port_var), var(&url_var), var(&password_var));
    if url.is_none() || password.is_none() || port.is_none() {
        let output = Command::new(repo_dir().join("tools/sandbox"))
            .arg("env")
            .env("ARCHIVER_SANDBOX_INSTANCE", instance.name())
            .output()
            .unwrap_or_else(|e| panic!("cannot run tools/sandbox env: {e}"));
        assert!(
            output.status.success(),
            "tools/sandbox env failed: {output:?}"
        );
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some((name, value)) = line.trim_start_matches("export ").split_once('=') else {
                continue;
            };
            let value = Some(value.to_string());
            if name == port_var && port.is_none() {
                port = value;
            } else if name == url_var && url.is_none() {
                url = value;
            } else if name == password_var && password.is_none() {
                password = value;
            }
        }
    }
    let port: u16 = match port {
        Some(p) => p
            .parse()
            .unwrap_or_else(|_| panic!("{port_var}={p} is not a port")),
        None => instance.default_port(),
    };
    Sandbox {
        instance,
        port,
        url: url.unwrap_or_else(|| format!("mysql://archiver@127.0.0.1:{port}/{SANDBOX_DATABASE}")),
        password: password.unwrap_or_else(|| SANDBOX_PASSWORD_DEFAULT.to_string()),
    }
}

impl Sandbox {
    /// `mysql://archiver@127.0.0.1:PORT/archiver_test` (no password; see [`Sandbox::password`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The password for [`Sandbox::url`]'s user.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of another database on the same server (for job configs).
    pub fn url_for_database(&self, database: &str) -> String {
        match self.url.rfind('/') {
            Some(slash) if slash > "mysql://".len() => format!("{}/{database}", &self.url[..slash]),
            _ => format!("{}/{database}", self.url),
        }
    }

    /// Creates a uniquely named database (`t_<prefix>_<pid>_<n>`), dropped when the returned
    /// [`TestDb`] is dropped (unless `ARCHIVER_TEST_KEEP_DB=1`). Holds the lifecycle lock shared.
    pub fn fresh_database(&self, prefix: &str) -> TestDb {
        TestDb::create(self, prefix)
    }

    /// Takes the lifecycle lock exclusively (waits until no other test holds a [`TestDb`]) for a
    /// test that kills or restarts the server. On drop, restarts the server if it is down.
    pub fn exclusive(&self) -> ExclusiveServer {
        let guard = exclusive_guard();
        ExclusiveServer {
            sandbox: self.clone(),
            guard: Some(guard),
        }
    }

    /// `kill -9`s the server (`tools/sandbox kill`). Call only while holding [`Sandbox::exclusive`].
    pub fn kill_server(&self) {
        self.run_tool("kill");
    }

    /// Starts the server (`tools/sandbox start`, which runs crash recovery after a kill) and
    /// waits until it accepts connections. Call only while holding [`Sandbox::exclusive`].
    pub fn start_server(&self) {
        self.run_tool("start");
        self.wait_ready();
    }

    /// Options for a `mysql_async` connection to `database` as the sandbox user, over TCP.
    pub fn opts(&self, database: Option<&str>) -> mysql_async::Opts {
        let base = mysql_async::Opts::from_url(&self.url)
            .unwrap_or_else(|e| panic!("bad sandbox url {}: {e}", self.url));
        mysql_async::OptsBuilder::from_opts(base)
            .pass(Some(self.password.clone()))
            .db_name(database.map(str::to_string))
            .prefer_socket(false)
            .into()
    }

    fn is_listening(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    }

    /// Waits until a real login succeeds (the port opens slightly before logins work).
    fn wait_ready(&self) {
        let deadline = Instant::now() + SERVER_READY_TIMEOUT;
        let runtime = runtime();
        loop {
            let attempt = runtime.block_on(async {
                let mut conn = mysql_async::Conn::new(self.opts(None)).await?;
                conn.query_drop("SELECT 1").await?;
                conn.disconnect().await
            });
            match attempt {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "sandbox MariaDB on port {} does not accept logins: {e}",
                        self.port
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Runs `tools/sandbox <subcommand>` with this sandbox's port; panics if it fails.
    fn run_tool(&self, subcommand: &str) {
        let tool = repo_dir().join("tools/sandbox");
        let output = Command::new(&tool)
            .arg(subcommand)
            .env("ARCHIVER_SANDBOX_INSTANCE", self.instance.name())
            .env(
                format!("ARCHIVER_SANDBOX{}_PORT", self.instance.suffix()),
                self.port.to_string(),
            )
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
        assert!(
            output.status.success(),
            "`tools/sandbox {subcommand}` failed ({}); a test that needs MariaDB cannot run \
             without it:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

/// The sandbox while this test holds the lifecycle lock exclusively: the place to kill and
/// restart the server. Dereferences to [`Sandbox`].
pub struct ExclusiveServer {
    /// The server this guard is about.
    sandbox: Sandbox,
    /// Keeps every other test's [`TestDb`] away while held (None only during drop).
    guard: Option<RwLockWriteGuard<'static, ()>>,
}

impl ExclusiveServer {
    /// Like [`Sandbox::fresh_database`], without taking the lock again (we hold it).
    pub fn fresh_database(&self, prefix: &str) -> TestDb {
        TestDb::create(&self.sandbox, prefix)
    }
}

impl std::ops::Deref for ExclusiveServer {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Drop for ExclusiveServer {
    fn drop(&mut self) {
        // Leave the server up for the next test even if this one panicked after a kill.
        if !self.sandbox.is_listening() {
            let _ = std::panic::catch_unwind(|| self.sandbox.start_server());
        }
        self.guard = None;
        LOCK_STATE.with(|state| state.borrow_mut().exclusive = false);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
}

/// A throwaway database on the sandbox with one open connection. Dropping it drops the database
/// (best effort).
pub struct TestDb {
    /// The server it lives on.
    sandbox: Sandbox,
    /// Database name, `t_<prefix>_<pid>_<n>`.
    name: String,
    /// Runs the connection's futures; current-thread, owned by this value.
    runtime: tokio::runtime::Runtime,
    /// The connection, `None` only during drop (or after the server was killed under it).
    conn: Option<mysql_async::Conn>,
    /// Shared hold on the lifecycle lock for the life of the database (a no-op under
    /// [`ExclusiveServer`]). Declared last: released after the database is dropped.
    _shared: SharedServer,
}

impl TestDb {
    fn create(sandbox: &Sandbox, prefix: &str) -> TestDb {
        let shared = shared_server();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let clean: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(32)
            .collect();
        let name = format!(
            "t_{clean}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let runtime = runtime();
        let conn = runtime
            .block_on(async {
                let mut conn = mysql_async::Conn::new(sandbox.opts(None)).await?;
                conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await?;
                conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                    .await?;
                conn.query_drop(format!("USE `{name}`")).await?;
                Ok::<_, mysql_async::Error>(conn)
            })
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create test database {name} on the sandbox (port {}): {e}",
                    sandbox.port
                )
            });
        TestDb {
            sandbox: sandbox.clone(),
            name,
            runtime,
            conn: Some(conn),
            _shared: shared,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `mysql://archiver@127.0.0.1:PORT/<name>`, no password (for job configs).
    pub fn url(&self) -> String {
        self.sandbox.url_for_database(&self.name)
    }

    /// The sandbox user's password.
    pub fn password(&self) -> &str {
        self.sandbox.password()
    }

    /// The server this database lives on.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Connection options for this database, for tests that run their own async code
    /// (e.g. a concurrent writer on another thread with its own runtime).
    pub fn opts(&self) -> mysql_async::Opts {
        self.sandbox.opts(Some(&self.name))
    }

    /// Runs one or more `;`-separated statements, ignoring results. Panics on error, with the SQL.
    /// Reconnects first if the connection is dead (e.g. after a server restart); never retries.
    pub fn exec(&mut self, sql: &str) {
        self.try_exec(sql)
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"));
    }

    /// Like [`TestDb::exec`], returning the error instead (for tests expecting one).
    pub fn try_exec(&mut self, sql: &str) -> Result<(), mysql_async::Error> {
        self.with_conn(sql, |conn, sql| {
            Box::pin(async move { conn.query_drop(sql).await })
        })
    }

    /// The first column of the first row, converted to `T`. Panics if there is no row.
    pub fn query_scalar<T: FromValue + Send + 'static>(&mut self, sql: &str) -> T {
        let row: Option<T> = self
            .with_conn(sql, |conn, sql| {
                Box::pin(async move { conn.query_first(sql).await })
            })
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"));
        row.unwrap_or_else(|| panic!("query returned no row: {sql}"))
    }

    /// All rows, each converted to `T` (a tuple, or a single column type).
    pub fn query_rows<T: FromRow + Send + 'static>(&mut self, sql: &str) -> Vec<T> {
        self.with_conn(sql, |conn, sql| {
            Box::pin(async move { conn.query(sql).await })
        })
        .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"))
    }

    /// `(rows, xor, sum)` of `table`, as `tools/checksum` computes it.
    pub fn checksum(&mut self, table: &str) -> (u64, u64, u64) {
        self.checksum_tables(&[table])
    }

    /// The checksum of `a UNION ALL b` (columns taken from `a`): equals `checksum(original)`
    /// exactly when the two tables together hold the original's rows, none lost or duplicated.
    pub fn checksum_union(&mut self, a: &str, b: &str) -> (u64, u64, u64) {
        self.checksum_tables(&[a, b])
    }

    /// The checksum of the union of any number of tables with the same columns.
    pub fn checksum_tables(&mut self, tables: &[&str]) -> (u64, u64, u64) {
        assert!(!tables.is_empty(), "checksum of no table");
        let row_expr: Option<String> =
            self.query_scalar(&row_expr_sql(&self.name.clone(), tables[0]));
        let row_expr =
            row_expr.unwrap_or_else(|| panic!("table {}.{} not found", self.name, tables[0]));
        let sql = checksum_sql(&self.name.clone(), tables, &row_expr);
        let row: Option<(u64, u64, u64)> = self
            .with_conn(&sql, |conn, sql| {
                Box::pin(async move { conn.query_first(sql).await })
            })
            .unwrap_or_else(|e| panic!("checksum query failed: {e}\n{sql}"));
        row.expect("an aggregate returns one row")
    }

    /// Runs `f` once on the connection. If the connection is dead (the server was killed or
    /// restarted since), it is replaced first; a statement is never retried, so a statement that
    /// fails because the server dies under it reports that error.
    fn with_conn<T>(&mut self, sql: &str, f: ConnOp<T>) -> Result<T, mysql_async::Error> {
        let opts = self.opts();
        let runtime = &self.runtime;
        let slot = &mut self.conn;
        runtime.block_on(async {
            if let Some(conn) = slot.as_mut() {
                if conn.ping().await.is_err() {
                    *slot = None;
                }
            }
            let conn = match slot {
                Some(conn) => conn,
                None => slot.insert(mysql_async::Conn::new(opts).await?),
            };
            f(conn, sql.to_string()).await
        })
    }
}

/// One query on a connection, as a function of the connection and the SQL text.
type ConnOp<T> = for<'c> fn(
    &'c mut mysql_async::Conn,
    String,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, mysql_async::Error>> + 'c>,
>;

impl Drop for TestDb {
    fn drop(&mut self) {
        let keep = std::env::var("ARCHIVER_TEST_KEEP_DB").is_ok_and(|v| v == "1");
        let name = self.name.clone();
        let conn = self.conn.take();
        let opts = self.opts();
        let _ = self.runtime.block_on(async move {
            let mut conn = match conn {
                Some(conn) => conn,
                None => mysql_async::Conn::new(opts).await?,
            };
            if !keep {
                // A lost connection just fails here; the database is left behind (best effort).
                conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await?;
            }
            conn.disconnect().await
        });
    }
}

/// SQL returning the per-row rendering expression of `table` (same as tools/checksum): string
/// and binary columns as HEX(col), others as CAST(col AS CHAR), NULL as 'NULL', joined by 0x1F.
pub fn row_expr_sql(database: &str, table: &str) -> String {
    format!(
        "SELECT CONCAT('CONCAT_WS(0x1F, ', GROUP_CONCAT(
           CONCAT('COALESCE(',
                  IF(DATA_TYPE IN ('char','varchar','tinytext','text','mediumtext','longtext',
                                   'enum','set','binary','varbinary','tinyblob','blob',
                                   'mediumblob','longblob','geometry','point','linestring',
                                   'polygon','multipoint','multilinestring','multipolygon',
                                   'geometrycollection'),
                     CONCAT('HEX(`', REPLACE(COLUMN_NAME, '`', '``'), '`)'),
                     CONCAT('CAST(`', REPLACE(COLUMN_NAME, '`', '``'), '` AS CHAR)')),
                  ', ''NULL'')')
           ORDER BY ORDINAL_POSITION SEPARATOR ', '), ')')
         FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {}",
        sql_string(database),
        sql_string(table)
    )
}

/// SQL returning `(rows, xor, sum)` over the union of `tables` (same as tools/checksum).
pub fn checksum_sql(database: &str, tables: &[&str], row_expr: &str) -> String {
    let parts: Vec<String> = tables
        .iter()
        .map(|table| {
            format!(
                "SELECT COUNT(*) AS c,
                        BIT_XOR(CAST(CONV(LEFT(MD5(r), 16), 16, 10) AS UNSIGNED)) AS x,
                        COALESCE(SUM(CRC32(r)), 0) AS s
                 FROM (SELECT {row_expr} AS r FROM {}.{}) AS t",
                ident(database),
                ident(table)
            )
        })
        .collect();
    format!(
        "SELECT CAST(SUM(c) AS UNSIGNED), BIT_XOR(x), CAST(SUM(s) AS UNSIGNED) FROM ({}) AS u",
        parts.join(" UNION ALL ")
    )
}

/// A backtick-quoted identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A single-quoted SQL string literal.
pub fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The `archiver` executable built for this test run, with `ARCHIVER_PASSWORD` set to the
/// sandbox password (the env var job configs name in `password_env`).
pub fn archiver_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_archiver"));
    cmd.env("ARCHIVER_PASSWORD", SANDBOX_PASSWORD_DEFAULT);
    if let Ok(password) = std::env::var("ARCHIVER_TEST_PASSWORD") {
        cmd.env("ARCHIVER_PASSWORD", password);
    }
    cmd
}

/// A job config in the TOML the CLI accepts, for `db`'s tables, same server for the archive.
pub fn job_toml(
    db: &TestDb,
    table: &str,
    archive_table: &str,
    predicate: &str,
    batch_rows: u64,
    wal_dir: &Path,
) -> String {
    format!(
        "[source]\nurl = {url}\npassword_env = \"ARCHIVER_PASSWORD\"\ntable = {table}\n\n\
         [archive]\ntable = {archive_table}\n\n\
         [job]\nwhere = {predicate}\nbatch_rows = {batch_rows}\nwal_dir = {wal}\nattempts_max = 5\n",
        url = toml_string(&db.url()),
        table = toml_string(table),
        archive_table = toml_string(archive_table),
        predicate = toml_string(predicate),
        wal = toml_string(&wal_dir.display().to_string()),
    )
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
pub fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
