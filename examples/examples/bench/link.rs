//! A run over a network: the client and the cluster joined by a relay that
//! holds every chunk for half a round trip in each direction, as a link to
//! a database in another machine does. What a run costs there is mostly
//! how often it waits for the server: the relay also counts the client's
//! turns (it writes after it has read), which are the round trips a
//! network makes it wait for.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use dbprep_runtime::testing::pool;
use dbprep_runtime::{Migrations, Migrator};

use super::{generate, migration_sql, short_runs, timed_apply, Bench, Pairs};

/// The round trip of the link: a database in the same data centre.
pub(super) const ROUND_TRIP: Duration = Duration::from_millis(1);

/// A relay on a loopback port in front of the cluster's port. Threads and
/// blocking sockets: a sleep of half a millisecond must not wait for an
/// async runtime's next timer tick.
pub(super) struct Link {
    port: u16,
    turns: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Link {
    /// A relay to `server_port` with `round_trip`.
    pub(super) fn start(server_port: u16, round_trip: Duration) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("the relay's port").port();
        let turns = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopped) = (turns.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                relay(client, server, round_trip / 2, counted.clone());
            }
        });
        Link { port, turns, stop }
    }

    /// The port clients connect to.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// The client turns since the last call.
    pub(super) fn take_turns(&self) -> usize {
        self.turns.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Relay one connection both ways, each chunk `delay` late; a chunk from
/// the client that follows one from the server is a turn.
fn relay(client: TcpStream, server: TcpStream, delay: Duration, turns: Arc<AtomicUsize>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let client_spoke_last = Arc::new(AtomicBool::new(false));
    let (from_client, to_client) = (client.try_clone().expect("clone a socket"), client);
    let (from_server, to_server) = (server.try_clone().expect("clone a socket"), server);
    let spoke = client_spoke_last.clone();
    pipe(from_client, to_server, delay, move || {
        if !spoke.swap(true, Ordering::Relaxed) {
            turns.fetch_add(1, Ordering::Relaxed);
        }
    });
    pipe(from_server, to_client, delay, move || {
        client_spoke_last.store(false, Ordering::Relaxed);
    });
}

/// Copy `from` to `to` on two threads: each chunk is written `delay` after
/// it was read, and chunks read meanwhile follow it, as on a wire.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Duration,
    on_chunk: impl Fn() + Send + 'static,
) {
    let (chunks, arrivals) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer) {
            on_chunk();
            if chunks
                .send((Instant::now() + delay, buffer[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    });
    thread::spawn(move || {
        for (due, bytes) in arrivals {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Bench {
    /// Fresh apply of N = 10, and a start-up that applies one new
    /// migration to that database, over a link with [`ROUND_TRIP`], next
    /// to `psql -1 -f` over the same link; with the client turns of each.
    pub(super) async fn link(&mut self, runs: usize, table: &mut String) {
        let link = Link::start(self.cluster.port(), ROUND_TRIP);
        let (ten_dir, ten_file, _) = generate(10, migration_sql);
        let (eleven_dir, _, _) = generate(11, migration_sql);
        let ten = Migrations::from_dir(ten_dir.path()).expect("generated migrations are valid");
        let eleven =
            Migrations::from_dir(eleven_dir.path()).expect("generated migrations are valid");
        let new_one = eleven_dir.path().join("V11__m11.sql");
        // A template at version 10, for the start-up.
        let template = self.fresh_database().await;
        let _ = Migrator::new(&ten)
            .run(&pool(self.cluster.config(&template), 1))
            .await
            .expect("apply the first ten");
        let ms = ROUND_TRIP.as_secs_f64() * 1000.0;
        for (figure, migrations, file, from) in [
            (
                format!("fresh apply, N = 10, over a link with {ms} ms round trips"),
                &ten,
                &ten_file,
                "template1",
            ),
            (
                format!("start-up applying 1 new migration to the N = 10 database, over a link with {ms} ms round trips"),
                &eleven,
                &new_one,
                template.as_str(),
            ),
        ] {
            let mut pairs = Pairs::default();
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for run in 0..short_runs(runs) {
                let ((a, a_turns), (b, b_turns)) = if run % 2 == 0 {
                    let a = self.dbprep_over(&link, migrations, from).await;
                    (a, self.psql_over(&link, file, from).await)
                } else {
                    let b = self.psql_over(&link, file, from).await;
                    (self.dbprep_over(&link, migrations, from).await, b)
                };
                pairs.push(a, b);
                ours.push(a_turns);
                theirs.push(b_turns);
            }
            let figure = format!(
                "{figure} (client turns: dbprep {}, psql {})",
                median(ours),
                median(theirs)
            );
            pairs.report(table, &figure, "`psql -1 -f`", "—");
        }
    }

    /// dbprep applying `migrations` over `link` to a new copy of
    /// `template`: the time, connection included, and the client turns.
    async fn dbprep_over(
        &mut self,
        link: &Link,
        migrations: &Migrations,
        template: &str,
    ) -> (Duration, usize) {
        let name = self.database_from(template).await;
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(link.port())
            .user("postgres")
            .dbname(&name);
        let pool = pool(config, 1);
        let _ = link.take_turns();
        let elapsed = timed_apply(&pool, migrations, true).await;
        (elapsed, link.take_turns())
    }

    /// `psql -1 -f file` over `link` on a new copy of `template`: the time,
    /// connection included, and the client turns.
    pub(super) async fn psql_over(
        &mut self,
        link: &Link,
        file: &Path,
        template: &str,
    ) -> (Duration, usize) {
        let name = self.database_from(template).await;
        let mut options = self.psql_options(&name);
        let port = options.iter().position(|a| a == "-p").expect("psql's port") + 1;
        options[port] = link.port().to_string();
        let _ = link.take_turns();
        let started = Instant::now();
        let status = Command::new(self.cluster.bin_dir().join("psql"))
            .args(options)
            .args(["-1", "-f"])
            .arg(file)
            .stdout(Stdio::null())
            .status()
            .expect("run psql");
        let elapsed = started.elapsed();
        assert!(status.success(), "psql failed");
        (elapsed, link.take_turns())
    }
}

/// The median of counts.
pub(super) fn median(mut counts: Vec<usize>) -> usize {
    counts.sort_unstable();
    counts[counts.len() / 2]
}
