//! A throwaway PgBouncer in front of a throwaway cluster, for tests of
//! what goes through a connection pooler.
//!
//! It listens on a free loopback port, logs every database in as the
//! cluster's superuser (`auth_type = any`: the cluster trusts loopback
//! connections anyway), and goes away with the process, as the cluster
//! does: the reaper that stops the cluster stops it too.

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::cluster::{
    free_port, io, loopback_config, server_dir, Cluster, ClusterError, Reaper, ServerUser,
};

/// PgBouncer's pooling mode: when a server connection goes back to the
/// pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// When the client disconnects.
    Session,
    /// At the end of each transaction: consecutive transactions of one
    /// client may run on different server connections.
    Transaction,
}

impl PoolMode {
    fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// A running PgBouncer.
#[derive(Debug)]
pub struct Bouncer {
    port: u16,
    binary: PathBuf,
    config: PathBuf,
    owner: ServerUser,
    child: Mutex<Child>,
    /// Told every PgBouncer pid, to stop each at the end.
    reaper: Mutex<Reaper>,
}

impl Bouncer {
    /// Start PgBouncer in `mode` in front of `cluster`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::PgBouncerNotFound`] when it is not installed, or an
    /// error starting it (with the end of its log).
    pub fn start(cluster: &Cluster, mode: PoolMode) -> Result<Bouncer, ClusterError> {
        let binary = find_pgbouncer().ok_or(ClusterError::PgBouncerNotFound)?;
        let owner = ServerUser::current()?;
        let (dir, mut reaper) = server_dir("dbprep-pgbouncer-", &owner)?;
        let port = free_port()?;
        let config = dir.join("pgbouncer.ini");
        let users = dir.join("users.txt");
        fs::write(&users, "\"postgres\" \"\"\n").map_err(io("write PgBouncer's users"))?;
        fs::write(
            &config,
            format!(
                "[databases]\n* = host=127.0.0.1 port={cluster_port} user=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = any\nauth_file = {users}\npool_mode = {mode}\n\
                 max_client_conn = 1000\ndefault_pool_size = 20\n\
                 ignore_startup_parameters = extra_float_digits,options\n\
                 logfile = {log}\n",
                cluster_port = cluster.port(),
                users = users.display(),
                mode = mode.as_str(),
                log = dir.join("pgbouncer.log").display(),
            ),
        )
        .map_err(io("write PgBouncer's configuration"))?;
        owner.give(&config)?;
        owner.give(&users)?;
        let child = spawn(&binary, &config, &owner)?;
        reaper.watch(child.id())?;
        let bouncer = Bouncer {
            port,
            binary,
            config,
            owner,
            child: Mutex::new(child),
            reaper: Mutex::new(reaper),
        };
        bouncer.wait_ready()?;
        Ok(bouncer)
    }

    /// The PgBouncer of this process, in transaction mode in front of the
    /// shared cluster, started on first use.
    ///
    /// # Errors
    ///
    /// The error of the first start, as text.
    pub fn shared() -> Result<&'static Bouncer, String> {
        static SHARED: OnceLock<Result<Bouncer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let cluster = Cluster::shared()?;
                Bouncer::start(cluster, PoolMode::Transaction).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection configuration for `database` through the pooler.
    pub fn config(&self, database: &str) -> tokio_postgres::Config {
        loopback_config(self.port, database)
    }

    /// Stop PgBouncer at once (`SIGTERM`: every client and server
    /// connection is cut) and start it again on the same port.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.stop()?;
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(10);
        // Its port may stay taken for a moment.
        let new = loop {
            let new = spawn(&self.binary, &self.config, &self.owner)?;
            std::thread::sleep(Duration::from_millis(100));
            let mut new = new;
            match new.try_wait() {
                Ok(None) => break new,
                _ if Instant::now() < deadline => continue,
                _ => {
                    return Err(ClusterError::Start {
                        reason: "PgBouncer did not start again".into(),
                        log: self.log_tail(),
                    })
                }
            }
        };
        self.reaper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .watch(new.id())?;
        *child = new;
        drop(child);
        self.wait_ready()
    }

    /// Stop PgBouncer at once (`SIGTERM`): every connection is cut and
    /// none is accepted until [`restart`](Self::restart). Stopping a
    /// stopped PgBouncer does nothing.
    ///
    /// # Errors
    ///
    /// Waiting for the process failed.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().map_err(io("wait for PgBouncer to stop"))?;
        }
        Ok(())
    }

    fn wait_ready(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait()
            {
                return Err(ClusterError::Start {
                    reason: format!("PgBouncer exited ({status})"),
                    log: self.log_tail(),
                });
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Start {
                    reason: "PgBouncer not listening after 30 s".into(),
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let log = self.config.with_file_name("pgbouncer.log");
        let text = fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

fn spawn(binary: &Path, config: &Path, owner: &ServerUser) -> Result<Child, ClusterError> {
    use std::os::unix::process::CommandExt;
    owner
        .command(binary.to_path_buf())
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(io("start pgbouncer"))
}

/// `pgbouncer` on `PATH`, else where Debian installs it.
fn find_pgbouncer() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("pgbouncer"))
                .find(|p| p.is_file())
        })
        .or_else(|| {
            let debian = PathBuf::from("/usr/sbin/pgbouncer");
            debian.is_file().then_some(debian)
        })
}
