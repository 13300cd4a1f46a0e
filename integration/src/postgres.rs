//! A real PostgreSQL server for a test: `initdb` into a temporary directory, then `postgres` on a
//! free loopback port with trust authentication, so tests can share state between daemons the way
//! a deployment does, and kill or restart the database under them. No Docker and no system-wide
//! cluster: the binaries come from the `postgresql` package that `scripts/setup` installs.
//!
//! PostgreSQL refuses to run as root, and CI runs the tests as root: then the server runs as the
//! `postgres` system account (switched to with `setpriv`), which owns the temporary directory.

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser `initdb` creates; [`TestPostgres::url`] connects as it.
pub const SUPERUSER: &str = "trtfarm";
/// The system account the server runs as when the tests run as root (the Debian package's).
const SYSTEM_USER: &str = "postgres";
/// How long a start (including crash recovery after [`TestPostgres::kill`]) may take.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL server on a fixed loopback port and data directory, so it can be stopped, killed
/// and started again as the same database. Dropping it kills the server and deletes its data.
pub struct TestPostgres {
    child: Option<Child>,
    port: u16,
    bin: PathBuf,
    /// The account the server runs as, when the tests run as root.
    system_user: Option<Account>,
    /// Holds `data/` (the cluster), `socket/` (its Unix socket) and `server.log`.
    dir: tempfile::TempDir,
}

/// A uid and gid to give files to.
#[derive(Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

impl TestPostgres {
    /// Creates a cluster and starts its server on a free loopback port; returns once it accepts
    /// queries.
    pub fn start() -> TestPostgres {
        let bin = bin_dir();
        // SAFETY: geteuid(2) cannot fail.
        let system_user = (unsafe { libc::geteuid() } == 0).then(|| {
            account(SYSTEM_USER).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL refuses to run as root and {e}: run scripts/setup \
                     (its `postgresql` package creates the `{SYSTEM_USER}` account)"
                )
            })
        });
        let dir = tempfile::tempdir().expect("create a temporary directory for PostgreSQL");
        std::fs::create_dir(dir.path().join("socket")).expect("create the socket directory");
        std::fs::File::create(dir.path().join("server.log")).expect("create the server log");
        if let Some(account) = system_user {
            for entry in walkdir::WalkDir::new(dir.path()) {
                let path = entry.expect("walk the PostgreSQL directory").into_path();
                std::os::unix::fs::chown(&path, Some(account.uid), Some(account.gid))
                    .unwrap_or_else(|e| panic!("give {} to {SYSTEM_USER}: {e}", path.display()));
            }
        }
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let mut server = TestPostgres {
            child: None,
            port,
            bin,
            system_user,
            dir,
        };
        server.initdb();
        server.launch();
        server
    }

    /// The connection URL: the superuser, the `postgres` database, no password.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's TCP port on 127.0.0.1, the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL), as a crash would; its data stays for
    /// [`restart`](Self::restart), which then runs crash recovery. The server's own worker
    /// processes notice and exit shortly after.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with a fast shutdown (SIGINT: sessions are ended, the data is
    /// checkpointed) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGINT);
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (stopping it first if it
    /// runs) and waits until it accepts queries.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Turns TLS on with the certificate and key at `cert` and `key` (PEM), copied into the
    /// cluster (the key readable by the server's account only, as PostgreSQL demands), and
    /// reloads the configuration: new connections may then use TLS.
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data_dir();
        for (from, name, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
            let to = data.join(name);
            std::fs::copy(from, &to).expect("copy the TLS files into the cluster");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
            if let Some(account) = self.system_user {
                std::os::unix::fs::chown(&to, Some(account.uid), Some(account.gid)).unwrap();
            }
        }
        self.psql("ALTER SYSTEM SET ssl = on");
        self.psql("SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until the server says TLS is on.
        let deadline = Instant::now() + START_TIMEOUT;
        while self.psql("SHOW ssl") != "on" {
            assert!(Instant::now() < deadline, "PostgreSQL did not turn TLS on");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `sql` with `psql` as the superuser and returns its output: unaligned, tuples only,
    /// trimmed (`select 1` gives `1`; rows are lines, columns separated by `|`). Panics with
    /// psql's error when a statement fails.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(["-U", SUPERUSER, "-d", "postgres"])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed ({}) on {sql:?}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// `program` from the bin directory, as the system account when the tests run as root, in
    /// the temporary directory (the test's working directory may be closed to that account), with
    /// English messages so [`launch`](Self::launch) can tell a busy port from a broken cluster.
    fn command(&self, program: &str) -> Command {
        let mut command = if self.system_user.is_some() {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={SYSTEM_USER}"))
                .arg(format!("--regid={SYSTEM_USER}"))
                .args(["--init-groups", "--"])
                .arg(self.bin.join(program));
            command
        } else {
            Command::new(self.bin.join(program))
        };
        command
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        command
    }

    /// Creates the cluster: trust authentication, superuser [`SUPERUSER`], UTF-8, C locale (the
    /// same collation on every machine).
    fn initdb(&self) {
        let out = self
            .command("initdb")
            .args(["-U", SUPERUSER, "-A", "trust", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "-D"])
            .arg(self.data_dir())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.join("initdb").display()));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `postgres` and waits until it accepts queries. A start that fails because the last
    /// run's port, lock file or shared memory is still held (just after a kill) is tried again.
    fn launch(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let port = self.port.to_string();
        loop {
            let log_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
            let log = std::fs::File::options()
                .append(true)
                .open(self.log_path())
                .expect("open the server log");
            let child = self
                .command("postgres")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-c", "listen_addresses=127.0.0.1", "-p", &port])
                .arg("-k")
                .arg(self.dir.path().join("socket"))
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
                .stdout(log.try_clone().expect("share the server log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.join("postgres").display()));
            self.child = Some(child);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = self.child.as_mut().unwrap().try_wait() {
                    self.child = None;
                    let attempt = self.log_since(log_start);
                    assert!(
                        is_transient(&attempt),
                        "postgres exited ({status}) on port {}:\n{attempt}",
                        self.port
                    );
                    break;
                }
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
                    && self.is_ready()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "postgres did not accept queries on port {} within {START_TIMEOUT:?}; \
                     the end of its log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether `pg_isready` says the server accepts connections (not just that it listens: it
    /// refuses them while it starts up or recovers from a crash).
    fn is_ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", "postgres"])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// What the server logged from byte `start` on.
    fn log_since(&self, start: u64) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let _ = file.seek(SeekFrom::Start(start));
            let _ = file.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The last 40 lines of the server log.
    fn log_tail(&self) -> String {
        let text = self.log_since(0);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for TestPostgres {
    /// Kills the server with an immediate shutdown (SIGQUIT: the server kills its worker
    /// processes too, so none outlive the test and write into the directory being deleted), or
    /// SIGKILL if it has not exited after a few seconds.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends `signal` to `child` (which is the server itself: `setpriv` execs it).
fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) only sends a signal; the child has not been waited for, so the pid is
    // still its own.
    unsafe { libc::kill(pid, signal) };
}

/// Whether a failed start's log says something held over from the last run is still in use:
/// the port, the data directory's lock file, or its shared memory (the killed server's workers
/// take a moment to notice and exit).
fn is_transient(log: &str) -> bool {
    log.contains("Address already in use")
        || (log.contains("lock file") && log.contains("already exists"))
        || log.contains("is still in use")
}

/// The directory holding `initdb`, `postgres`, `pg_isready` and `psql`: `TRTFARM_PG_BIN` when set
/// (`scripts/setup --print-env` sets it), else the newest `/usr/lib/postgresql/*/bin` (where
/// Debian puts them, off PATH), else the one on PATH.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRTFARM_PG_BIN").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return bin;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path).find(|dir| Path::new(dir).join("initdb").is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no initdb in TRTFARM_PG_BIN, \
                 /usr/lib/postgresql/*/bin or PATH): run scripts/setup"
            )
        })
}

/// `15` → `[15]`, `9.6` → `[9, 6]`: a directory name of `/usr/lib/postgresql` as a version to
/// compare; `None` for anything else.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The uid and gid of the account `name`, from `id`.
fn account(name: &str) -> Result<Account, String> {
    Ok(Account {
        uid: crate::other_user::account_id("-u", name)?,
        gid: crate::other_user::account_id("-g", name)?,
    })
}
