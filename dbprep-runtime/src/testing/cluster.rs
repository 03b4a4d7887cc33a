//! A throwaway PostgreSQL cluster started from the system's binaries.
//!
//! The cluster lives in a temporary directory, listens on a free loopback
//! port, and is removed when the [`Cluster`] is dropped or the process
//! exits, whichever comes first: a small reaper process waits for the end
//! of a pipe that only this process holds (Rust statics are never dropped,
//! and a test binary can be killed).

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::pg::tools;

/// Why a throwaway cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No `initdb` on `PATH` or under `/usr/lib/postgresql/*/bin`.
    #[error("PostgreSQL server binaries not found (no initdb on PATH or under /usr/lib/postgresql/*/bin): install them (Debian: apt-get install postgresql) or set DATABASE_URL to a server")]
    BinariesNotFound,
    /// No `pgbouncer` on `PATH` or in `/usr/sbin`.
    #[error("PgBouncer not found (no pgbouncer on PATH or in /usr/sbin): install it (Debian: apt-get install pgbouncer)")]
    PgBouncerNotFound,
    /// Running as root without a `postgres` user to run the server as.
    #[error("running as root, and PostgreSQL refuses to run as root, but there is no `postgres` user to run it as: create one (useradd postgres) or run as another user")]
    NoPostgresUser,
    /// `initdb` or `pg_basebackup` failed.
    #[error("{tool} failed ({status}):\n{output}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The server did not start.
    #[error("PostgreSQL did not start: {reason}; its log ends with:\n{log}")]
    Start {
        /// What went wrong.
        reason: String,
        /// The end of the server log.
        log: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

/// A running throwaway cluster. Superuser `postgres`, trust authentication
/// on 127.0.0.1 only, `fsync=off`: for tests and demos, never for data.
#[derive(Debug)]
pub struct Cluster {
    port: u16,
    bin_dir: PathBuf,
    /// The cluster's directory: `data`, its log, its socket.
    dir: PathBuf,
    owner: ServerUser,
    durable: bool,
    settings: Vec<(String, String)>,
    /// Held open for the reaper: closing it stops the server and removes
    /// the directory. Told of every server started, restarts included.
    reaper: std::sync::Mutex<Reaper>,
}

impl Cluster {
    /// Start a new cluster with `initdb` and `postgres` found on the system.
    ///
    /// # Errors
    ///
    /// [`ClusterError`] when the binaries are missing or the server does not
    /// come up (the error holds the end of its log).
    pub fn start() -> Result<Cluster, ClusterError> {
        Cluster::start_with(false, &[])
    }

    /// Start a new cluster with extra server settings (`-c name=value`),
    /// e.g. `ssl=on` with its certificate files.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with_settings(settings: &[(&str, &str)]) -> Result<Cluster, ClusterError> {
        Cluster::start_with(false, settings)
    }

    /// Start a new cluster that flushes to disk like a production server
    /// (`fsync=on`), with the server's default settings and no preloaded
    /// library: for benchmarks, where `fsync=off` would flatter every
    /// commit.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_durable() -> Result<Cluster, ClusterError> {
        Cluster::start_with(true, &[])
    }

    fn start_with(durable: bool, settings: &[(&str, &str)]) -> Result<Cluster, ClusterError> {
        Cluster::create(durable, settings, |bin_dir, data, owner| {
            initdb(bin_dir, data, owner)
        })
    }

    /// Start a hot standby of this cluster: a base backup streaming from it
    /// (`pg_basebackup -R`), read-only, for tests of what must work on a
    /// replica.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), or a failed base backup.
    pub fn start_standby(&self) -> Result<Cluster, ClusterError> {
        let port = self.port.to_string();
        Cluster::create(false, &[], |bin_dir, data, owner| {
            let mut command = owner.command(bin_dir.join("pg_basebackup"));
            command
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "--checkpoint=fast",
                    "-D",
                ])
                .arg(data);
            run_tool("pg_basebackup", command)
        })
    }

    /// Make a data directory with `make_data`, then start a server on it.
    fn create(
        durable: bool,
        settings: &[(&str, &str)],
        make_data: impl FnOnce(&Path, &Path, &ServerUser) -> Result<(), ClusterError>,
    ) -> Result<Cluster, ClusterError> {
        let bin_dir = find_bin_dir().ok_or(ClusterError::BinariesNotFound)?;
        let owner = ServerUser::current()?;
        let (dir, mut reaper) = server_dir("dbprep-pg-", &owner)?;
        let data = dir.join("data");
        make_data(&bin_dir, &data, &owner)?;
        let log = dir.join("postgres.log");
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let child = start_server(&bin_dir, &dir, port, &owner, &log, durable, settings)?;
            reaper.watch(child.id())?;
            match wait_ready(child, &data, port, &log) {
                Ok(()) => {
                    return Ok(Cluster {
                        port,
                        bin_dir,
                        dir,
                        owner,
                        durable,
                        settings: settings
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        reaper: std::sync::Mutex::new(reaper),
                    })
                }
                // Another process may have taken the port: try another.
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts were made"))
    }

    /// The cluster of this process, started on first use and shared by every
    /// test of the binary.
    ///
    /// # Errors
    ///
    /// The error of the first start, as text (it is shared by every caller).
    pub fn shared() -> Result<&'static Cluster, String> {
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Cluster::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Stop the server with a fast shutdown (as `pg_ctl restart -m fast`:
    /// every session is cut, open transactions roll back) and start it
    /// again on the same port and data.
    ///
    /// # Errors
    ///
    /// The server did not stop within a minute, or did not start again.
    pub fn restart(&self) -> Result<(), ClusterError> {
        let data = self.dir.join("data");
        let pid_file = data.join("postmaster.pid");
        let pid: i32 = fs::read_to_string(&pid_file)
            .map_err(io("read postmaster.pid"))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| ClusterError::Start {
                reason: "postmaster.pid names no process".into(),
                log: String::new(),
            })?;
        // SAFETY: kill has no memory preconditions; the pid is our server's.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while pid_file.exists() {
            if Instant::now() > deadline {
                return Err(ClusterError::Start {
                    reason: "the server did not stop within a minute".into(),
                    log: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.dir.join("postgres.log");
        let settings: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let child = start_server(
            &self.bin_dir,
            &self.dir,
            self.port,
            &self.owner,
            &log,
            self.durable,
            &settings,
        )?;
        self.reaper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .watch(child.id())?;
        wait_ready(child, &data, self.port, &log)
    }

    /// The directory of the server's Unix-domain socket (libpq's `host`
    /// for a local connection without TCP).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder of the server binaries (`psql`, `pg_dump`, … sit beside
    /// `initdb`).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A connection URL for `database` (no password: trust authentication).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A connection configuration for `database`.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        loopback_config(self.port, database)
    }
}

/// `postgres` on `database` at `127.0.0.1:port`, as the test support
/// connects (no password: trust authentication).
pub(super) fn loopback_config(port: u16, database: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(database)
        .application_name("dbprep-test");
    config
}

/// The folder holding `initdb` and `postgres`, as [`tools::candidates`]
/// orders them.
fn find_bin_dir() -> Option<PathBuf> {
    tools::candidates("initdb")
        .filter_map(|initdb| initdb.parent().map(Path::to_path_buf))
        .find(|dir| dir.join("postgres").is_file())
}

/// Who runs the server: this process's user, or `postgres` when this
/// process is root (PostgreSQL refuses to run as root).
#[derive(Debug)]
pub(super) struct ServerUser {
    ids: Option<(u32, u32)>,
}

impl ServerUser {
    pub(super) fn current() -> Result<Self, ClusterError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(ServerUser { ids: None });
        }
        // SAFETY: the name is a valid C string; the returned record is read
        // at once, before any other call that could reuse its storage.
        let ids = unsafe {
            let pw = libc::getpwnam(c"postgres".as_ptr());
            if pw.is_null() {
                return Err(ClusterError::NoPostgresUser);
            }
            ((*pw).pw_uid, (*pw).pw_gid)
        };
        Ok(ServerUser { ids: Some(ids) })
    }

    pub(super) fn give(&self, dir: &Path) -> Result<(), ClusterError> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(io(format!("chown {}", dir.display())))?;
        }
        Ok(())
    }

    pub(super) fn command(&self, program: PathBuf) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command.uid(uid).gid(gid).env("HOME", "/tmp");
        }
        command
    }
}

fn initdb(bin_dir: &Path, data: &Path, owner: &ServerUser) -> Result<(), ClusterError> {
    let mut command = owner.command(bin_dir.join("initdb"));
    command.arg("-D").arg(data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-sync",
    ]);
    run_tool("initdb", command)
}

/// Run a server tool to its end; what it printed becomes the error when it
/// fails.
fn run_tool(tool: &'static str, mut command: Command) -> Result<(), ClusterError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("run {tool}")))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(ClusterError::Tool {
            tool,
            status: output.status,
            output: text,
        });
    }
    Ok(())
}

pub(super) fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("find a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io("find a free port"))
}

fn start_server(
    bin_dir: &Path,
    dir: &Path,
    port: u16,
    owner: &ServerUser,
    log: &Path,
    durable: bool,
    settings: &[(&str, &str)],
) -> Result<Child, ClusterError> {
    let log_file = fs::File::create(log).map_err(io("create the server log"))?;
    owner.give(log)?;
    let stderr = log_file.try_clone().map_err(io("open the server log"))?;
    let mut command = owner.command(bin_dir.join("postgres"));
    if !durable {
        // Tests only: a crash may lose data, which a throwaway cluster never
        // keeps.
        command.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
    }
    for (name, value) in settings {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    // pg_stat_statements, when installed, lets tests count the statements a
    // run sends. Not in a durable (benchmark) cluster, which runs the server
    // as installed: it adds about 1 µs to every statement, and so weighs on
    // whichever side of a comparison sends more of them.
    if !durable && bin_dir.join("../lib/pg_stat_statements.so").is_file() {
        command.args(["-c", "shared_preload_libraries=pg_stat_statements"]);
    }
    command
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
        ])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        // Its own process group: a Ctrl-C in the terminal reaches the reaper,
        // which stops the server and removes its files, not the server alone.
        .process_group(0);
    command.spawn().map_err(io("start postgres"))
}

fn wait_ready(mut child: Child, data: &Path, port: u16, log: &Path) -> Result<(), ClusterError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fail = |reason: String| {
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        ClusterError::Start { reason, log }
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(fail(format!("the server exited ({status})")));
        }
        // postmaster.pid's 8th line becomes "ready" once it accepts
        // connections.
        let ready = fs::read_to_string(data.join("postmaster.pid"))
            .is_ok_and(|pid| pid.lines().nth(7).is_some_and(|s| s.trim() == "ready"));
        if ready && TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(fail("not ready after 60 s".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A new temporary directory for a server run by `owner`, and the reaper
/// that removes it (after stopping the processes it is told of) when this
/// process ends. The reaper is started first, so that a failure after this
/// still cleans up.
pub(super) fn server_dir(
    prefix: &str,
    owner: &ServerUser,
) -> Result<(PathBuf, Reaper), ClusterError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(io("create a temporary directory"))?
        .keep();
    let reaper = Reaper::spawn(&dir)?;
    owner.give(&dir)?;
    Ok((dir, reaper))
}

/// A shell that outlives this process just long enough to stop the server
/// and remove its directory once this process closes its pipe (on drop, on
/// exit, or when killed).
#[derive(Debug)]
pub(super) struct Reaper {
    pub(super) stdin: ChildStdin,
}

impl Reaper {
    pub(super) fn spawn(dir: &Path) -> Result<Self, ClusterError> {
        // Each line read is a server pid to stop at the end.
        let script = r#"
            trap '' INT HUP TERM
            pids=""
            while read -r pid; do pids="$pids $pid"; done
            for pid in $pids; do kill -QUIT "$pid" 2>/dev/null; done
            for i in $(seq 100); do
                alive=""
                for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
                [ -z "$alive" ] && break
                sleep 0.1
            done
            for pid in $pids; do kill -KILL "$pid" 2>/dev/null; done
            rm -rf "$1"
        "#;
        let mut child = Command::new("sh")
            .args(["-c", script, "dbprep-reaper"])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io("start the cluster's reaper (sh)"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        Ok(Reaper { stdin })
    }

    pub(super) fn watch(&mut self, pid: u32) -> Result<(), ClusterError> {
        writeln!(self.stdin, "{pid}").map_err(io("talk to the cluster's reaper"))
    }
}
