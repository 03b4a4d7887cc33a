//! Connecting: only what waiting can fix is retried; a missing or refused
//! password, an unknown database and a bad setting fail at once with a
//! message that says what to do; errors read like their text in `Debug`.

use std::os::unix::fs::PermissionsExt;
use std::sync::OnceLock;
use std::time::Duration;

use dbprep_runtime::testing::{Bouncer, Cluster, PoolMode, TestServer};
use dbprep_runtime::{connect, Error};

/// A cluster that asks every role but `postgres` for a password, with a
/// role `app` whose password is `s3cret-pw`; `None` on a `DATABASE_URL`
/// server.
fn password_cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    if let TestServer::External(_) = TestServer::get().unwrap() {
        return None;
    }
    Some(CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hba = dir.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        std::fs::set_permissions(&hba, std::fs::Permissions::from_mode(0o644)).unwrap();
        let hba = hba.display().to_string();
        let cluster =
            Cluster::start_with_settings(&[("hba_file", &hba)]).unwrap_or_else(|e| panic!("{e}"));
        // On a thread of its own: the caller is inside a test's runtime.
        let config = cluster.config("postgres");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                client
                    .batch_execute("CREATE ROLE app LOGIN PASSWORD 's3cret-pw'")
                    .await
                    .unwrap();
            });
        })
        .join()
        .unwrap();
        cluster
    }))
}

/// `app` on `database` of the password cluster, with `password` if any.
fn app(cluster: &Cluster, database: &str, password: Option<&str>) -> tokio_postgres::Config {
    let mut config = cluster.config(database);
    config.user("app");
    if let Some(password) = password {
        config.password(password);
    }
    config
}

/// Connect with a long patience: what cannot be waited out must fail at
/// once, which the message shows (it says so when it waited).
async fn refused(config: &tokio_postgres::Config) -> String {
    let error = connect(config, Duration::from_secs(60)).await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(
            &error,
            Error::Connect {
                source: Some(_),
                ..
            }
        ),
        "{text}"
    );
    assert!(
        !text.contains("gave up after waiting"),
        "it retried: {text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
    text
}

#[tokio::test]
async fn a_missing_password_fails_at_once_and_says_where_one_may_come_from() {
    let Some(cluster) = password_cluster() else {
        return;
    };
    assert_eq!(
        refused(&app(cluster, "postgres", None)).await,
        "cannot connect to the database: the server asks for a password and none was given: \
         put it in the URL (DATABASE_URL or --url), in the service file's entry (password=), in PGPASSWORD, \
         in a file given with --password-file, \
         or in the password file (PGPASSFILE, else ~/.pgpass, mode 0600)"
    );
}

#[tokio::test]
async fn a_wrong_password_an_unknown_role_and_an_unknown_database_fail_at_once() {
    let Some(cluster) = password_cluster() else {
        return;
    };
    let wrong = refused(&app(cluster, "postgres", Some("nope"))).await;
    assert!(
        wrong.contains("password authentication failed for user \"app\" (SQLSTATE 28P01)"),
        "{wrong}"
    );
    let mut nobody = cluster.config("postgres");
    nobody.user("nobody").password("x");
    let nobody = refused(&nobody).await;
    assert!(nobody.contains("(SQLSTATE 28P01)"), "{nobody}");
    let database = refused(&app(cluster, "no_such_db", Some("s3cret-pw"))).await;
    assert!(
        database.contains("database \"no_such_db\" does not exist (SQLSTATE 3D000)"),
        "{database}"
    );
    let client = connect(&app(cluster, "postgres", Some("s3cret-pw")), Duration::ZERO)
        .await
        .unwrap();
    assert!(client.simple_query("SELECT 1").await.is_ok());
}

#[tokio::test]
async fn a_server_that_is_not_up_is_waited_for_then_named() {
    // Nothing listens on port 1 of the loopback.
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(1).user("app").dbname("db");
    let error = connect(&config, Duration::from_millis(300))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("cannot connect to the database: error connecting to server: ")
            && text.contains("gave up after waiting"),
        "{text}"
    );
    // Debug reads like the message, for a main that returns the error.
    assert!(format!("{error:?}").starts_with(&text), "{error:?}");
}

#[tokio::test]
async fn a_server_that_comes_up_while_it_is_waited_for_is_connected_to() {
    let TestServer::Cluster(cluster) = TestServer::get().unwrap() else {
        return; // The way in that goes down and up is a PgBouncer of the test's own.
    };
    let bouncer: &'static Bouncer = Box::leak(Box::new(
        Bouncer::start(cluster, PoolMode::Session).unwrap_or_else(|e| panic!("{e}")),
    ));
    let db = crate::support::database().await;
    bouncer.stop().unwrap();
    let config = bouncer.config(db.name());
    let waiting = tokio::spawn(async move { connect(&config, Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "it did not wait");
    tokio::task::spawn_blocking(|| bouncer.restart())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let client = waiting.await.unwrap().unwrap();
    assert!(client.simple_query("SELECT 1").await.is_ok());
}

#[tokio::test]
async fn the_password_file_gives_the_password_as_libpq_reads_it() {
    let Some(cluster) = password_cluster() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    let port = cluster.port().to_string();
    std::fs::write(
        &file,
        format!("# host:port:database:user:password\n127.0.0.1:{port}:other:app:wrong\n127.0.0.1:{port}:*:app:s3cret-pw\n"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vars = |file: &std::path::Path| {
        let (file, port) = (file.display().to_string(), port.clone());
        move |name: &str| match name {
            "PGHOST" => Some("127.0.0.1".to_owned()),
            "PGPORT" => Some(port.clone()),
            "PGUSER" => Some("app".to_owned()),
            "PGDATABASE" => Some("postgres".to_owned()),
            "PGPASSFILE" => Some(file.clone()),
            _ => None,
        }
    };
    let config = dbprep_runtime::pg::connect::config::from_vars(vars(&file)).unwrap();
    let client = connect(&config, Duration::ZERO).await.unwrap();
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "app");
    // Readable by others: ignored, as libpq does, and the password is missing.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dbprep_runtime::pg::connect::config::from_vars(vars(&file)).unwrap();
    let text = refused(&config).await;
    assert!(
        text.contains("the server asks for a password and none was given"),
        "{text}"
    );
}

/// A Unix-domain socket, as libpq names it: `PGHOST` set to the socket's
/// directory, and `host=` in a key-value string. The session is on the
/// socket (no server address) and a run works over it.
#[tokio::test]
async fn a_unix_socket_from_pghost_or_a_key_value_string() {
    let TestServer::Cluster(cluster) = TestServer::get().unwrap() else {
        return;
    };
    let dir = cluster.socket_dir().display().to_string();
    let port = cluster.port().to_string();
    let key_value = format!("host={dir} port={port} user=postgres dbname=postgres");
    for vars in [
        vec![
            ("PGHOST", dir.clone()),
            ("PGPORT", port.clone()),
            ("PGUSER", "postgres".into()),
            ("PGDATABASE", "postgres".into()),
        ],
        vec![("DATABASE_URL", key_value)],
    ] {
        let config = dbprep_runtime::pg::connect::config::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let client = connect(&config, Duration::from_secs(5)).await.unwrap();
        let row = client
            .query_one("SELECT inet_server_addr() IS NULL", &[])
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "connected over TCP, not the socket");
    }
}
