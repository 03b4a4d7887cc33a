//! The `dbprep` binary end to end against a real PostgreSQL: every
//! subcommand, its exit code, its `--json` shape, and its error paths.

mod conventions;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dbprep_runtime::testing::{Bouncer, TestDatabase, TestServer};
use serde_json::Value;

const DBPREP: &str = env!("CARGO_BIN_EXE_dbprep");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `dbprep` on the demo folders, pointed at `db` by the libpq variables.
fn dbprep(db: &TestDatabase, args: &[&str]) -> Output {
    dbprep_with(db, args, &[])
}

/// [`dbprep`] with more environment variables (set last, so they win).
fn dbprep_with(db: &TestDatabase, args: &[&str], env: &[(&str, String)]) -> Output {
    dbprep_on(db, &workspace().join("migrations"), args, env)
}

/// [`dbprep_with`] on the migrations of `folder`.
fn dbprep_on(db: &TestDatabase, folder: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let config = db.config();
    let mut command = Command::new(DBPREP);
    command
        .arg("--migrations")
        .arg(folder)
        .arg("--fixtures")
        .arg(workspace().join("fixtures"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("PGDATABASE", db.name());
    if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        command.env("PGHOST", host);
    }
    if let Some(port) = config.get_ports().first() {
        command.env("PGPORT", port.to_string());
    }
    if let Some(user) = config.get_user() {
        command.env("PGUSER", user);
    }
    if let Some(password) = config.get_password() {
        command.env("PGPASSWORD", String::from_utf8_lossy(password).into_owned());
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.output().expect("run dbprep")
}

/// The command succeeded; else its standard error is the failure.
fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Add a column by hand, then `verify --json`: exit 1, and its report.
async fn verify_after_a_hand_change(db: &TestDatabase) -> Value {
    db.connect()
        .await
        .unwrap()
        .batch_execute("ALTER TABLE users ADD COLUMN nickname text")
        .await
        .unwrap();
    let verify = dbprep(db, &["verify", "--json"]);
    assert_eq!(verify.status.code(), Some(1));
    json(&verify)
}

fn json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

async fn database() -> TestDatabase {
    TestDatabase::new().await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn upgrade_status_history_verify_and_fixtures() {
    let db = database().await;
    let up = dbprep(&db, &["upgrade", "--json"]);
    assert_success(&up);
    let up = json(&up);
    assert_eq!(up["version"], 5);
    assert_eq!(up["applied"].as_array().unwrap().len(), 5);

    let status = json(&dbprep(&db, &["status", "--json"]));
    let versions = status["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 5);
    assert_eq!(versions[0]["state"], "applied");
    assert!(versions[4]["file"]
        .as_str()
        .unwrap()
        .ends_with("V5__index_keypairs_by_user.sql"));

    let text = String::from_utf8_lossy(&dbprep(&db, &["status"]).stdout).into_owned();
    assert!(text.starts_with("version  name"), "{text}");

    let history = json(&dbprep(&db, &["history", "--json"]));
    assert_eq!(history["history"][4]["version"], 5);

    let verify = dbprep(&db, &["verify", "--json"]);
    assert!(verify.status.success());
    assert_eq!(json(&verify)["clean"], true);

    let list = json(&dbprep(&db, &["fixture", "list", "--json"]));
    assert_eq!(list["fixtures"][0]["name"], "example-keypairs");
    let populate = json(&dbprep(
        &db,
        &["fixture", "populate", "example-keypairs", "--json"],
    ));
    assert_eq!(
        (populate["outcome"].as_str(), populate["rows"].as_u64()),
        (Some("populated"), Some(8))
    );
    let again = json(&dbprep(
        &db,
        &["fixture", "populate", "example-keypairs", "--json"],
    ));
    assert_eq!(again["outcome"], "unchanged");

    // Drift: exit 1, and the JSON says what changed.
    let report = verify_after_a_hand_change(&db).await;
    assert_eq!(report["clean"], false);
    assert_eq!(report["findings"][0]["kind"], "schema");
    assert!(report["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("column public.users.nickname added"));
}

/// A history made with `--history-schema app`: a command without the
/// flag does not start another in `public`; the variable, like the flag,
/// names the schema.
#[tokio::test]
async fn a_history_in_another_schema_is_found_by_its_schema_only() {
    let db = database().await;
    assert_success(&dbprep(
        &db,
        &["upgrade", "--to", "2", "--history-schema", "app"],
    ));
    let plain = dbprep(&db, &["upgrade"]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&plain.stderr).starts_with(
            "error: this database has the history table \"dbprep_schema_history\" in schema \"app\", not in \"public\""
        ),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let by_variable = dbprep_with(
        &db,
        &["upgrade", "--json"],
        &[("DBPREP_HISTORY_SCHEMA", "app".to_owned())],
    );
    assert_success(&by_variable);
    assert_eq!(json(&by_variable)["version"], 5);
}

/// A database that does not exist is named, with the commands that
/// create it.
#[tokio::test]
async fn a_missing_database_is_named_with_what_creates_it() {
    let db = database().await;
    let out = dbprep_with(
        &db,
        &["upgrade"],
        &[("PGDATABASE", "dbprep_no_such_database".to_owned())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: cannot connect to the database: database \"dbprep_no_such_database\" does not exist (SQLSTATE 3D000); \
         create it first: `create-database`, or `oneshot`, which creates it and migrates (in code, `ensure_database`)"
    );
}

/// `upgrade --to` a version below the database's applies nothing and says
/// so, rather than "up to date", and names the command that goes back.
#[tokio::test]
async fn upgrade_to_a_version_the_database_is_past_says_so() {
    let db = database().await;
    assert_success(&dbprep(&db, &["upgrade", "--to", "3"]));
    let back = dbprep(&db, &["upgrade", "--to", "2"]);
    assert_success(&back);
    assert_eq!(
        String::from_utf8_lossy(&back.stdout).trim(),
        "database at version 3, past the target 2: nothing to apply (`dbprep downgrade --to 2` goes back to it)"
    );
    let at = dbprep(&db, &["upgrade", "--to", "3"]);
    assert_eq!(
        String::from_utf8_lossy(&at.stdout).trim(),
        "database up to date at version 3"
    );
    let status = json(&dbprep(&db, &["status", "--json"]));
    let states: Vec<&str> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["applied", "applied", "applied", "pending", "pending"]
    );
}

#[tokio::test]
async fn upgrade_without_a_schema_snapshot_stores_no_definitions() {
    let db = database().await;
    let up = dbprep(&db, &["upgrade", "--no-schema-snapshot"]);
    assert_success(&up);
    let client = db.connect().await.unwrap();
    let stored = client
        .query_one(
            "SELECT definition ->> 'version', definition ->> 'itemized', \
             (SELECT count(*) FROM public.dbprep_schema_snapshot WHERE definition IS NOT NULL AND section <> '') \
             FROM public.dbprep_schema_snapshot WHERE section = ''",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            stored.get::<_, &str>(0),
            stored.get::<_, &str>(1),
            stored.get::<_, i64>(2)
        ),
        ("5", "false", 0)
    );
    assert!(
        verify_after_a_hand_change(&db).await["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("stored no snapshot")
    );
}

#[tokio::test]
async fn stamp_then_repair_and_oneshot() {
    let db = database().await;
    let stamp = dbprep(&db, &["stamp", "3", "--json"]);
    assert_success(&stamp);
    assert_eq!(json(&stamp)["applied"].as_array().unwrap().len(), 3);
    // In text: what was recorded, with no durations (nothing ran).
    let head = dbprep(&db, &["stamp", "head"]);
    assert_success(&head);
    assert_eq!(
        String::from_utf8_lossy(&head.stdout).trim_end(),
        "stamped 2 version(s), database at version 5:\n       4  touch_modified_at\n       5  index_keypairs_by_user"
    );
    let again = dbprep(&db, &["stamp", "head"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim_end(),
        "nothing to stamp; database at version 5"
    );
    let bad = dbprep(&db, &["stamp", "latest"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("a version number or `head`"));
    let repair = json(&dbprep(&db, &["repair", "--json"]));
    assert_eq!(repair["removed_dirty"], serde_json::json!([]));

    // oneshot on a database that does not exist yet.
    let fresh = database().await;
    let client = fresh.connect().await.unwrap();
    let name = format!("{}_oneshot", fresh.name());
    let mut output = {
        let mut c = Command::new(DBPREP);
        c.arg("--migrations").arg(workspace().join("migrations"));
        c
    };
    let config = fresh.config();
    if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        output.env("PGHOST", host);
    }
    output
        .env("PGPORT", config.get_ports()[0].to_string())
        .env("PGUSER", config.get_user().unwrap());
    output
        .env("PGDATABASE", &name)
        .env_remove("DATABASE_URL")
        .args(["oneshot", "--json"]);
    let result = output.output().unwrap();
    assert_success(&result);
    let value = json(&result);
    assert_eq!(
        (
            value["created_database"].as_bool(),
            value["version"].as_i64()
        ),
        (Some(true), Some(5))
    );
    client
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test]
async fn check_walks_the_steps_and_names_the_failing_one() {
    let db = database().await;
    let ok = dbprep(&db, &["check", "--json"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let steps = json(&ok)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(
        steps,
        [
            "server reachable",
            "authentication",
            "database exists",
            "TLS",
            "server version",
            "privileges"
        ]
    );

    let missing = dbprep(
        &db,
        &[
            "check",
            "--url",
            &format!("postgres://postgres@{}/no_such_db", host_port(&db)),
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    let text = String::from_utf8_lossy(&missing.stdout);
    assert!(text.contains("FAIL database exists"), "{text}");
    assert!(text.contains("dbprep create-database"), "{text}");
}

fn host_port(db: &TestDatabase) -> String {
    let config = db.config();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    format!("{host}:{}", config.get_ports()[0])
}

#[tokio::test]
async fn create_database_and_role_are_idempotent() {
    let db = database().await;
    let name = format!("{}_made", db.name());
    let role = format!("{}_app", db.name());
    let first = json(&dbprep(&db, &["create-database", &name, "--json"]));
    assert_eq!(first["created"], true);
    let second = dbprep(&db, &["create-database", &name]);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("already exists"));

    let mut command = Command::new(DBPREP);
    command.args([
        "create-role",
        &role,
        "--password-from-env",
        "APP_PASSWORD",
        "--url",
        &format!("postgres://postgres@{}/{}", host_port(&db), db.name()),
    ]);
    let out = command.env("APP_PASSWORD", "p@ss:w/rd%").output().unwrap();
    assert_success(&out);
    let client = db.connect().await.unwrap();
    let stored = client
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    let stored: Option<String> = stored.get(0);
    assert!(
        stored.unwrap().starts_with("SCRAM-SHA-256$"),
        "the server got a verifier, not the password"
    );
    client
        .batch_execute(&format!("DROP DATABASE \"{name}\""))
        .await
        .unwrap();
    client
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_empty_password_is_refused_from_every_source() {
    let db = database().await;
    let role = format!("{}_empty", db.name());
    let url = format!("postgres://postgres@{}/{}", host_port(&db), db.name());
    let dir = tempfile::tempdir().unwrap();
    let empty_file = dir.path().join("password");
    std::fs::write(&empty_file, "\n").unwrap();
    let empty_file = empty_file.to_str().unwrap().to_owned();
    // What `echo "$UNSET" | … --password-stdin` sends, an empty file, and
    // a variable set to nothing.
    let mut from_stdin = Command::new(DBPREP);
    from_stdin
        .args(["create-role", &role, "--password-stdin", "--url", &url])
        .stdin(std::process::Stdio::piped());
    let mut child = from_stdin
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"\n").unwrap();
    }
    let stdin = child.wait_with_output().unwrap();
    let file = Command::new(DBPREP)
        .args([
            "create-role",
            &role,
            "--password-from-file",
            &empty_file,
            "--url",
            &url,
        ])
        .output()
        .unwrap();
    let env = Command::new(DBPREP)
        .args([
            "create-role",
            &role,
            "--password-from-env",
            "APP_PASSWORD",
            "--url",
            &url,
        ])
        .env("APP_PASSWORD", "")
        .output()
        .unwrap();
    for (source, out) in [
        ("the password read from stdin", &stdin),
        ("the first line of the password file", &file),
        ("the variable APP_PASSWORD", &env),
    ] {
        assert!(!out.status.success(), "{source}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains(source)
                && said.contains("is empty")
                && said.contains("nothing was created"),
            "{said}"
        );
    }
    let client = db.connect().await.unwrap();
    let made = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap();
    assert!(made.is_none(), "a role was made without its password");
    // Without any password source the role logs in as before, and says so.
    let granted = Command::new(DBPREP)
        .args(["create-role", &role, "--url", &url])
        .output()
        .unwrap();
    assert_success(&granted);
    let again = Command::new(DBPREP)
        .args(["create-role", &role, "--url", &url])
        .output()
        .unwrap();
    assert_success(&again);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        format!("role {role} already exists (login granted)")
    );
    client
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_password_never_appears_in_output() {
    // Every failing command, with the password given each way a user can,
    // in text, --json and -vv logs.
    const SECRET: &str = "s3cret-pw";
    let db = database().await;
    let port = db.config().get_ports()[0].to_string();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, SECRET).unwrap();
    let password_file = password_file.to_str().unwrap().to_owned();
    let urls = [
        format!("postgres://app:{SECRET}@127.0.0.1:1/db"),
        format!("postgres://app:{SECRET}@host:notaport/db"),
        format!("postgres://app:{SECRET}@127.0.0.1:{port}/no_such_db?sslmode=bogus"),
        format!("postgres://app:{SECRET}@127.0.0.1:{port}/no_such_db"),
    ];
    let commands: &[&[&str]] = &[
        &["upgrade"],
        &["upgrade", "--json"],
        &["-vv", "upgrade"],
        &["status", "--json"],
        &["verify"],
        &["check"],
        &["check", "--json"],
        &["oneshot"],
        &["stamp", "head"],
        &["repair"],
        &["fixture", "populate", "example-keypairs"],
        &["history"],
    ];
    let mut checked = 0;
    for url in &urls {
        for command in commands {
            // The password in the URL, in PGPASSWORD, and in a file.
            for how in 0..3 {
                let mut args: Vec<&str> = command.to_vec();
                let mut env = vec![("PGPORT", "1".to_owned())];
                match how {
                    0 => args.extend(["--url", url.as_str()]),
                    1 => {
                        args.extend(["--url", "postgres://app@127.0.0.1:1/db"]);
                        env.push(("PGPASSWORD", SECRET.to_owned()));
                    }
                    _ => args.extend([
                        "--url",
                        "postgres://app@127.0.0.1:1/db",
                        "--password-file",
                        &password_file,
                    ]),
                }
                let out = dbprep_with(&db, &args, &env);
                assert!(!out.status.success(), "{args:?} succeeded");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(!text.contains(SECRET), "{args:?}: {text}");
                assert!(!text.is_empty(), "{args:?} said nothing");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, urls.len() * commands.len() * 3);
}

#[test]
fn a_bad_migrations_folder_is_refused_before_connecting() {
    let out = Command::new(DBPREP)
        .args(["--migrations"])
        .arg(workspace().join("dbprep-macros/tests/cases/commit"))
        .args(["upgrade"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("V1__a.sql:3:1: COMMIT inside a migration"),
        "{text}"
    );
}

/// Make a CA and a server certificate for `db.example` (not for the
/// address the test connects to), and a client certificate for the role
/// `certuser`, with the openssl command.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    for ca in ["ca", "other-ca"] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ]);
    }
    // `name`.crt and `name`.key, for `subject`, signed by the CA with the
    // extension `ext` (which also makes it a version 3 certificate).
    let signed = |name: &str, subject: &str, ext: &str| {
        let (key, csr, crt, cnf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.cnf"),
        );
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ]);
        std::fs::write(dir.join(&cnf), format!("{ext}\n")).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &cnf,
            "-out",
            &crt,
        ]);
    };
    signed("server", "/CN=db.example", "subjectAltName=DNS:db.example");
    // A client certificate for the role `certuser`, from the same CA.
    signed("client", "/CN=certuser", "extendedKeyUsage=clientAuth");
}

/// A throwaway cluster serving TLS with the certificates of `dir`, and
/// `settings` on top.
fn tls_cluster(dir: &Path, settings: &[(&str, &str)]) -> dbprep_runtime::testing::Cluster {
    // The server runs as postgres when the tests run as root: it must be
    // able to read its files, and the key must be private to it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for public in ["server.crt", "ca.pem"] {
        std::fs::set_permissions(dir.join(public), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    if unsafe_is_root() {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir.join("server.key"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let cert = dir.join("server.crt").display().to_string();
    let key = dir.join("server.key").display().to_string();
    let mut all = vec![
        ("ssl", "on"),
        ("ssl_cert_file", cert.as_str()),
        ("ssl_key_file", key.as_str()),
    ];
    all.extend_from_slice(settings);
    dbprep_runtime::testing::Cluster::start_with_settings(&all).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn sslmode_require_verify_ca_and_verify_full_against_a_tls_server() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cluster = tls_cluster(dir.path(), &[]);
    let url = |query: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{query}",
            cluster.port()
        )
    };
    let ca = dir.path().join("ca.pem").display().to_string();
    let other = dir.path().join("other-ca.pem").display().to_string();
    let check = |query: String| {
        let out = Command::new(DBPREP)
            .args(["check", "--url", &query])
            .env_remove("DATABASE_URL")
            .env_remove("PGSSLMODE")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = check(url("sslmode=require"));
    assert!(ok && text.contains("ok   TLS: encrypted"), "{text}");
    let (ok, text) = check(url(&format!("sslmode=verify-ca&sslrootcert={ca}")));
    assert!(ok && text.contains("encrypted"), "{text}");
    // The certificate names db.example, not 127.0.0.1.
    let (ok, text) = check(url(&format!("sslmode=verify-full&sslrootcert={ca}")));
    assert!(!ok && text.contains("FAIL TLS"), "{text}");
    let (ok, text) = check(url(&format!("sslmode=verify-ca&sslrootcert={other}")));
    assert!(!ok && text.contains("FAIL TLS"), "{text}");
    let (ok, text) = check(url("sslmode=disable"));
    assert!(ok && text.contains("not encrypted"), "{text}");
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test]
async fn invalid_indexes_in_status_and_verify_and_repair_drops_them() {
    let db = database().await;
    assert_success(&dbprep(&db, &["upgrade"]));
    // What an interrupted CREATE INDEX CONCURRENTLY leaves: an INVALID index.
    let client = db.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE dup (x int); INSERT INTO dup VALUES (1), (1);")
        .await
        .unwrap();
    client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY ix_dup ON dup (x)")
        .await
        .unwrap_err();
    let status = json(&dbprep(&db, &["status", "--json"]));
    assert_eq!(
        status["invalid_indexes"],
        serde_json::json!(["public.ix_dup on dup"])
    );
    let text = String::from_utf8_lossy(&dbprep(&db, &["status"]).stdout).into_owned();
    assert!(
        text.contains("INVALID index public.ix_dup on dup"),
        "{text}"
    );
    let verify = dbprep(&db, &["verify", "--json"]);
    assert_eq!(verify.status.code(), Some(1));
    let kinds: Vec<Value> = json(&verify)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].clone())
        .collect();
    assert!(kinds.contains(&"invalid_index".into()), "{kinds:?}");
    let repair = json(&dbprep(&db, &["repair", "--json"]));
    assert_eq!(
        repair["invalid_indexes"],
        serde_json::json!(["public.ix_dup on dup"])
    );
    let repair = dbprep(&db, &["repair", "--drop-invalid-indexes"]);
    assert_success(&repair);
    let text = String::from_utf8_lossy(&repair.stdout).into_owned();
    assert!(
        text.contains("dropped the INVALID index public.ix_dup on dup"),
        "{text}"
    );
    let status = json(&dbprep(&db, &["status", "--json"]));
    assert_eq!(status["invalid_indexes"], serde_json::json!([]));
}

#[tokio::test]
async fn upgrade_through_pgbouncer_in_transaction_mode() {
    let db = database().await;
    let bad = dbprep(&db, &["--lock-mode", "pooled", "status"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert!(stderr.contains("unknown lock mode \"pooled\""), "{stderr}");
    let TestServer::Cluster(_) = TestServer::get().unwrap() else {
        return; // PgBouncer is set up for the throwaway cluster only.
    };
    let bouncer = Bouncer::shared().unwrap_or_else(|e| panic!("{e}"));
    let through = [
        ("PGPORT", bouncer.port().to_string()),
        ("DBPREP_LOCK_MODE", "transaction".to_owned()),
    ];
    let upgrade = dbprep_with(&db, &["upgrade", "--json"], &through);
    assert_success(&upgrade);
    assert_eq!(json(&upgrade)["applied"].as_array().unwrap().len(), 5);
    let populate = dbprep_with(&db, &["fixture", "populate", "example-keypairs"], &through);
    assert_success(&populate);
    let status = json(&dbprep_with(&db, &["status", "--json"], &through));
    assert!(
        status["versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "applied"),
        "{status}"
    );
    let verify = dbprep_with(&db, &["verify"], &through);
    assert_success(&verify);
}

#[test]
fn wait_gives_up_on_a_server_that_never_comes_and_names_it() {
    let out = Command::new(DBPREP)
        .arg("--migrations")
        .arg(workspace().join("migrations"))
        .args(["--wait", "1", "status"])
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .env("PGUSER", "app")
        .env("PGDATABASE", "app")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("cannot connect to the database: error connecting to server: ")
            && text.contains("gave up after waiting"),
        "{text}"
    );
}

#[tokio::test]
async fn wait_lets_a_command_run_once_the_server_answers() {
    let db = database().await;
    let out = dbprep(&db, &["--wait", "10", "upgrade", "--json"]);
    assert_success(&out);
    assert_eq!(json(&out)["version"], 5);
}

/// A migrations folder's entries: name and bytes.
type Files<'a> = &'a [(&'a str, &'a [u8])];

/// `dbprep --migrations DIR upgrade` on `db`, DIR made of `files`
/// (name, bytes; a name ending in `/` is a folder, `@target` a symlink):
/// the error it printed, after checking that it failed and wrote nothing.
async fn refused_folder(db: &TestDatabase, files: Files<'_>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("m");
    std::fs::create_dir(&folder).unwrap();
    for (name, bytes) in files {
        if let Some(folder_name) = name.strip_suffix('/') {
            std::fs::create_dir(folder.join(folder_name)).unwrap();
        } else if let Some(target) = std::str::from_utf8(bytes).unwrap_or("").strip_prefix('@') {
            std::os::unix::fs::symlink(target, folder.join(name)).unwrap();
        } else {
            std::fs::write(folder.join(name), bytes).unwrap();
        }
    }
    let config = db.config();
    let out = Command::new(DBPREP)
        .current_dir(dir.path())
        .args(["--migrations", "m", "upgrade"])
        .env_remove("DATABASE_URL")
        .env("PGDATABASE", db.name())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", config.get_ports()[0].to_string())
        .env("PGUSER", config.get_user().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{files:?}");
    let client = db.connect().await.unwrap();
    let written = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(written, 0, "{files:?}: something was written");
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[tokio::test]
async fn hostile_migration_folders_are_refused_with_the_file_named_and_nothing_written() {
    let db = database().await;
    let cases: &[(Files, &str)] = &[
        (
            &[("V99999999999999999999__big.sql", b"SELECT 1;")],
            "error: m/V99999999999999999999__big.sql: version 99999999999999999999 is too large (at most 9223372036854775807)",
        ),
        (
            &[("V1__a.sql/", b"")],
            "error: m/V1__a.sql: a folder where a migration file is expected; a migration is a .sql file (diesel's migration folders are named <version>_<name>, without .sql)",
        ),
        (
            &[("V1__a.sql", b"@V1__a.sql")],
            "error: m/V1__a.sql: cannot read: Too many levels of symbolic links (os error 40)",
        ),
        (
            &[("V1__a.sql", b"SELECT 1;\0")],
            "error: m/V1__a.sql:1:10: a NUL character, which PostgreSQL refuses in SQL; remove it",
        ),
        (
            &[("V1__a.sql", b"SELECT \xe9;")],
            "error: m/V1__a.sql:1: not valid UTF-8 (byte 7); save the file as UTF-8",
        ),
        (
            &[("V-1__a.sql", b"SELECT 1;")],
            "error: m/V-1__a.sql: not a migration name: expected V<version>__<name>.sql, U<version>__<name>.sql, B<version>__<name>.sql, R__<name>.sql, <version>_<name>.sql or <version>_<name>.up.sql/.down.sql",
        ),
        (
            &[("V1__a.sql", b"SELECT 1;"), ("00000000000001_a.sql", b"SELECT 1;")],
            "error: m/V1__a.sql: version 1 is also used by m/00000000000001_a.sql; versions must be unique: renumber one of them",
        ),
        (
            &[("U1__a.sql", b"DROP TABLE a;")],
            "error: m/U1__a.sql: down migration without an up migration of version 1; add the up file or delete this one",
        ),
        (
            &[("V1__a.sql", b"CREATE TABLE a (id int);\nCOMMIT;")],
            "error: m/V1__a.sql:2:1: COMMIT inside a migration commits part of the migration with no history row\n    COMMIT\n  hint: remove it; statements that must run outside a transaction go in a file of their own that starts with `-- dbprep:no-transaction`",
        ),
        (
            &[("V1__a.sql", b"SELECT 'unterminated;")],
            "error: m/V1__a.sql:1:8: unterminated string\n  hint: close it; the rest of the file is swallowed by it",
        ),
        (
            &[("V1__a.sql", b"\\i other.sql")],
            "error: m/V1__a.sql:1:1: psql meta-command: the server does not understand it\n    \\i other.sql\n  hint: write the SQL itself: inline what `\\i` includes, replace `\\set` variables with their values; a migration runs on the connection dbprep opened",
        ),
    ];
    for (files, expected) in cases {
        let stderr = refused_folder(&db, files).await;
        assert_eq!(&stderr, expected, "{files:?}");
    }
    let missing = Command::new(DBPREP)
        .args(["--migrations", "/nonexistent/migrations", "upgrade"])
        .env("PGPORT", "1")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        stderr.trim(),
        "error: /nonexistent/migrations: migrations folder not found; create it or fix the path \
         (embed_migrations! reads it relative to the crate's Cargo.toml, the command line \
         relative to the current directory)"
    );
}

#[test]
fn an_unreadable_migration_file_is_named_before_connecting() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let folder = dir.path().join("m");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("V1__a.sql"), "SELECT 1;").unwrap();
    std::fs::set_permissions(
        folder.join("V1__a.sql"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    // Root reads any file: run the command as an unprivileged user then,
    // from a copy of the binary that user can reach.
    let mut command = if unsafe_is_root() {
        let binary = dir.path().join("dbprep");
        std::fs::copy(DBPREP, &binary).unwrap();
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(binary);
        c
    } else {
        Command::new(DBPREP)
    };
    let out = command
        .current_dir(dir.path())
        .args(["--migrations", "m", "upgrade"])
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: m/V1__a.sql: cannot read: Permission denied (os error 13)"
    );
}

#[tokio::test]
async fn names_with_quotes_semicolons_and_unicode_are_quoted_everywhere() {
    let db = database().await;
    let schema = r#"dbprep"; DROP TABLE users; --ü"#;
    assert_success(&dbprep(&db, &["--history-schema", schema, "upgrade"]));
    let client = db.connect().await.unwrap();
    let history = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = 'dbprep_schema_history'",
            &[&schema],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(history, 1, "the history is not in the schema so named");
    assert_success(&dbprep(&db, &["--history-schema", schema, "verify"]));
    // A fixture whose table and file names try to end the statement.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("we'ird\"; DROP TABLE users; --.json");
    std::fs::write(&file, br#"{"users\"; DROP TABLE users; --": [{"id": 1}]}"#).unwrap();
    let out = dbprep(
        &db,
        &[
            "--history-schema",
            schema,
            "fixture",
            "populate",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"table users"; DROP TABLE users; --: no such table"#),
        "{stderr}"
    );
    let users = client
        .query_one("SELECT to_regclass('public.users') IS NOT NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0);
    assert!(users, "users was dropped");
}

#[test]
fn a_bad_url_and_an_unknown_sslmode_are_named_and_nothing_is_tried() {
    for (url, expected) in [
        (
            "postgres://app:s3cret-pw@host:notaport/db",
            "error: the connection URL (DATABASE_URL or --url) is not a valid PostgreSQL connection string: invalid connection string: invalid value for option `port`",
        ),
        (
            "postgres://app@127.0.0.1:1/db?sslmode=bogus",
            "error: sslmode \"bogus\" is not one of disable, allow, prefer, require, verify-ca, verify-full",
        ),
    ] {
        let out = Command::new(DBPREP)
            .arg("--migrations")
            .arg(workspace().join("migrations"))
            .args(["--url", url, "status"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), expected);
    }
}

/// The demo application's data as an older release kept it in SQLite:
/// UUIDs as 32 hex digits, booleans as 0 and 1, naive date-times, and
/// Alembic's own history table.
#[cfg(feature = "sqlite")]
const LEGACY_MANAGER: &str = "
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('3f2a1b9c');
CREATE TABLE domains (name VARCHAR(64) PRIMARY KEY, description TEXT, is_active BOOLEAN,
    created_at DATETIME, modified_at DATETIME);
INSERT INTO domains VALUES ('default', 'The default domain', 1, '2023-01-02 03:04:05.123456', '2023-01-02 03:04:05.123456');
CREATE TABLE groups (id CHAR(32) PRIMARY KEY, name VARCHAR(64), description TEXT, domain_name VARCHAR(64),
    is_active BOOLEAN, created_at DATETIME, modified_at DATETIME);
INSERT INTO groups VALUES ('6f1c0b2e8a9d4c3b9e7f5a4d3c2b1a09', 'admins', NULL, 'default', 1, '2023-01-02 03:04:05', '2023-01-02 03:04:05');
CREATE TABLE users (id CHAR(32) PRIMARY KEY, username VARCHAR(64), email VARCHAR(128), password VARCHAR(128),
    full_name VARCHAR(128), domain_name VARCHAR(64), role VARCHAR(16), status VARCHAR(32),
    created_at DATETIME, modified_at DATETIME);
INSERT INTO users VALUES ('0b9d4e3f2a1c4b5d8e7f6a5b4c3d2e1f', 'admin', 'admin@example.com', NULL, 'Admin', 'default',
    'superadmin', 'active', '2023-01-02 03:04:05', '2023-01-02 03:04:05');
CREATE TABLE association_groups_users (group_id CHAR(32), user_id CHAR(32), PRIMARY KEY (group_id, user_id));
INSERT INTO association_groups_users VALUES ('6f1c0b2e8a9d4c3b9e7f5a4d3c2b1a09', '0b9d4e3f2a1c4b5d8e7f6a5b4c3d2e1f');
CREATE TABLE keypairs (access_key VARCHAR(20) PRIMARY KEY, secret_key VARCHAR(40), user_id CHAR(32),
    is_active BOOLEAN, is_admin BOOLEAN, rate_limit INTEGER, num_queries INTEGER, created_at DATETIME, last_used DATETIME);
INSERT INTO keypairs VALUES ('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    '0b9d4e3f2a1c4b5d8e7f6a5b4c3d2e1f', 1, 1, 5000, 12, '2023-01-02 03:04:05', NULL);
";

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn import_sqlite_moves_a_legacy_database_in_one_command() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manager.db");
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(LEGACY_MANAGER)
        .unwrap();
    let path = file.to_str().unwrap();
    let out = dbprep(&db, &["import-sqlite", path, "--at", "3", "--json"]);
    assert_success(&out);
    let report = json(&out);
    assert_eq!(report["copied_at"], 3, "{report}");
    assert_eq!(report["version"], 5, "{report}");
    assert_eq!(report["rows"], 5, "{report}");
    assert_eq!(report["only_in_sqlite"][0], "alembic_version", "{report}");
    let client = db.connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT u.id::text, u.role::text, k.is_admin, k.created_at AT TIME ZONE 'UTC' \
             FROM users u JOIN keypairs k ON k.user_id = u.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "0b9d4e3f-2a1c-4b5d-8e7f-6a5b4c3d2e1f"
    );
    assert_eq!(row.get::<_, String>(1), "superadmin");
    assert!(row.get::<_, bool>(2));
    assert_success(&dbprep(&db, &["verify"]));
    // Again: the database is past the data's version now.
    let out = dbprep(&db, &["import-sqlite", path, "--at", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!(
            "error: import of {path}: the database is at version 5, past 3 that the data matches; \
             import into a database at 3 or before; no row was copied"
        )
    );
}

#[test]
fn the_folders_are_arguments_with_variables_and_a_missing_default_is_an_error() {
    let help = Command::new(DBPREP).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--migrations <DIR>") && help.contains("[env: DBPREP_MIGRATIONS=]"),
        "{help}"
    );
    assert!(
        help.contains("--fixtures <DIR>") && help.contains("[env: DBPREP_FIXTURES=]"),
        "{help}"
    );
    // In a folder with no migrations/: a command that needs migrations
    // says so before connecting, instead of running on an empty set.
    let empty = tempfile::tempdir().unwrap();
    let status = Command::new(DBPREP)
        .current_dir(empty.path())
        .arg("status")
        .env_remove("DBPREP_MIGRATIONS")
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&status.stderr).trim(),
        "error: migrations: migrations folder not found; create it or fix the path \
         (embed_migrations! reads it relative to the crate's Cargo.toml, the command line \
         relative to the current directory)"
    );
}

#[tokio::test]
async fn dbprep_migrations_names_the_folder() {
    let db = database().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let config = db.config();
    let out = Command::new(DBPREP)
        .current_dir(elsewhere.path())
        .args(["upgrade", "--json"])
        .env("DBPREP_MIGRATIONS", workspace().join("migrations"))
        .env_remove("DATABASE_URL")
        .env("PGDATABASE", db.name())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", config.get_ports()[0].to_string())
        .env("PGUSER", config.get_user().unwrap())
        .output()
        .unwrap();
    assert_success(&out);
    assert_eq!(json(&out)["version"], 5);
}

#[test]
fn sql_prints_the_script_without_connecting() {
    let out = Command::new(DBPREP)
        .arg("--migrations")
        .arg(workspace().join("migrations"))
        .args(["sql", "--from", "2", "--to", "4"])
        .env_remove("DATABASE_URL")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", "1")
        .output()
        .unwrap();
    assert_success(&out);
    let demo = dbprep_runtime::Migrations::from_dir(workspace().join("migrations")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        demo.script(Some(2), Some(4)).unwrap()
    );
    let unknown = Command::new(DBPREP)
        .arg("--migrations")
        .arg(workspace().join("migrations"))
        .args(["sql", "--from", "9"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr).trim(),
        "error: the script would start at version 9, which is not one of the embedded migrations"
    );
}

#[tokio::test]
async fn a_dba_reviews_the_sql_runs_it_with_psql_and_dbprep_finds_nothing_to_do() {
    let db = database().await;
    let script = dbprep(&db, &["sql"]);
    assert_success(&script);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upgrade.sql");
    std::fs::write(&file, &script.stdout).unwrap();
    let config = db.config();
    let mut psql =
        Command::new(dbprep_runtime::testing::program("psql").expect("psql is installed"));
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .env("PGDATABASE", db.name())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", config.get_ports()[0].to_string())
        .env("PGUSER", config.get_user().unwrap());
    if let Some(password) = config.get_password() {
        psql.env("PGPASSWORD", String::from_utf8_lossy(password).into_owned());
    }
    let psql = psql.output().unwrap();
    assert_success(&psql);
    let verify = dbprep(&db, &["verify"]);
    assert_success(&verify);
    let upgrade = dbprep(&db, &["upgrade", "--json"]);
    assert_success(&upgrade);
    assert_eq!(json(&upgrade)["applied"], serde_json::json!([]));
    assert_eq!(json(&upgrade)["version"], 5);
}

/// A copy of the demo's migrations folder, of the files `keep` keeps.
fn demo_migrations(keep: impl Fn(&Path) -> bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(workspace().join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        if keep(&path) {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[tokio::test]
async fn squash_writes_a_baseline_that_a_fresh_database_starts_from() {
    let db = database().await;
    let dir = demo_migrations(|path| path.extension().is_some_and(|e| e == "sql"));
    let folder = dir.path();
    let squash = dbprep_on(
        &db,
        folder,
        &["squash", "--to", "4", "--out", folder.to_str().unwrap()],
        &[],
    );
    assert_success(&squash);
    let written = dir.path().join("B4__baseline.sql");
    assert_eq!(
        String::from_utf8_lossy(&squash.stdout).trim(),
        format!("wrote {} (the baseline of version 4)", written.display())
    );
    assert!(std::fs::read_to_string(&written)
        .unwrap()
        .contains("CREATE TABLE public.keypairs"));
    // A fresh database starts from it, then applies version 5.
    let upgrade = dbprep_on(&db, folder, &["upgrade", "--json"], &[]);
    assert_success(&upgrade);
    let applied: Vec<i64> = json(&upgrade)["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["version"].as_i64().unwrap())
        .collect();
    assert_eq!(applied, [4, 5]);
    assert_success(&dbprep_on(&db, folder, &["verify"], &[]));
}

#[tokio::test]
async fn downgrade_lists_with_dry_run_then_goes_back_and_refuses_what_it_cannot_undo() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a (id int);").unwrap();
    std::fs::write(dir.path().join("U1__a.sql"), "DROP TABLE a;").unwrap();
    std::fs::write(dir.path().join("V2__b.sql"), "CREATE TABLE b (id int);").unwrap();
    std::fs::write(dir.path().join("U2__b.sql"), "DROP TABLE b;").unwrap();
    std::fs::write(dir.path().join("V3__c.sql"), "CREATE TABLE c (id int);").unwrap();
    let folder = dir.path();
    assert_success(&dbprep_on(&db, folder, &["upgrade"], &[]));
    let refused = dbprep_on(&db, folder, &["downgrade", "--to", "0"], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&format!(
            "cannot go back to version 0: version 3 ({}/V3__c.sql) has no down migration; nothing was reverted",
            folder.display()
        )),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::remove_file(dir.path().join("V3__c.sql")).unwrap();
    std::fs::write(dir.path().join("V3__c.sql"), "CREATE TABLE c (id int);").unwrap();
    std::fs::write(dir.path().join("U3__c.sql"), "DROP TABLE c;").unwrap();
    let dry = dbprep_on(
        &db,
        folder,
        &["downgrade", "--to", "1", "--dry-run", "--json"],
        &[],
    );
    assert_success(&dry);
    let dry = json(&dry);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["version"], 1);
    let versions: Vec<i64> = dry["reverted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2]);
    let back = dbprep_on(&db, folder, &["downgrade", "--to", "1"], &[]);
    assert_success(&back);
    assert!(
        String::from_utf8_lossy(&back.stdout)
            .starts_with("reverted 2 migration(s), database at version 1"),
        "{}",
        String::from_utf8_lossy(&back.stdout)
    );
    assert_success(&dbprep_on(&db, folder, &["verify"], &[]));
}

#[tokio::test]
async fn check_reversible_walks_the_set_on_a_scratch_database() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("V1__a.sql"), "CREATE TABLE a (id int);").unwrap();
    std::fs::write(dir.path().join("U1__a.sql"), "DROP TABLE a;").unwrap();
    std::fs::write(dir.path().join("V2__b.sql"), "CREATE TABLE b (id int);").unwrap();
    std::fs::write(dir.path().join("U2__b.sql"), "SELECT 1;").unwrap();
    let out = dbprep_on(&db, dir.path(), &["check-reversible"], &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("1 reversible, 0 without a down, 1 not reversible\n  2 (")
            && text.contains("after the down: table public.b added"),
        "{text}"
    );
    // Its own database is untouched.
    assert_success(&dbprep_on(&db, dir.path(), &["status"], &[]));
    let history = dbprep_on(&db, dir.path(), &["history", "--json"], &[]);
    assert_eq!(json(&history), serde_json::json!({ "history": [] }));
}

#[tokio::test]
async fn adopt_takes_over_a_diesel_database_then_upgrade_applies_what_is_new() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    for (folder, up) in [
        ("2024-01-01-000001_users", "CREATE TABLE users (id int);"),
        ("2024-01-02-000001_posts", "CREATE TABLE posts (id int);"),
    ] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        std::fs::write(dir.path().join(folder).join("up.sql"), up).unwrap();
    }
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE __diesel_schema_migrations (
                 version VARCHAR(50) PRIMARY KEY NOT NULL,
                 run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
             CREATE TABLE users (id int);
             INSERT INTO __diesel_schema_migrations (version) VALUES ('20240101000001');",
        )
        .await
        .unwrap();
    let folder = dir.path();
    let unknown = dbprep_on(&db, folder, &["adopt", "--from", "liquibase"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("unknown tool \"liquibase\": expected sqlx, refinery, diesel or flyway"));

    let dry = dbprep_on(
        &db,
        folder,
        &["adopt", "--from", "diesel", "--dry-run", "--json"],
        &[],
    );
    assert_success(&dry);
    let dry = json(&dry);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["adopted"][0]["version"], 20240101000001_i64);
    assert_eq!(dry["adopted"][0]["check"], "version_only");
    assert_eq!(dry["pending"], serde_json::json!([20240102000001_i64]));

    let adopted = dbprep_on(&db, folder, &["adopt", "--from", "diesel"], &[]);
    assert_success(&adopted);
    let text = String::from_utf8_lossy(&adopted.stdout);
    assert!(
        text.starts_with(
            "adopted 1 version(s) from diesel's history \"public\".\"__diesel_schema_migrations\" (1 row(s) read)"
        ) && text.contains("the next upgrade applies 20240102000001"),
        "{text}"
    );
    let upgrade = dbprep_on(&db, folder, &["upgrade", "--json"], &[]);
    assert_success(&upgrade);
    assert_eq!(json(&upgrade)["applied"][0]["version"], 20240102000001_i64);
    assert_success(&dbprep_on(&db, folder, &["verify"], &[]));
}

#[tokio::test]
async fn lint_lists_blocking_ddl_with_json_and_exit_1_and_needs_no_database() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("V1__users.sql"),
        "CREATE TABLE users (id int, email text);\nCREATE INDEX users_id ON users (id);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V2__email.sql"),
        "CREATE INDEX users_email ON users (email);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V3__lock.sql"),
        "-- dbprep:allow(lock-table)\nLOCK TABLE users;",
    )
    .unwrap();
    let found = dbprep_on(
        &db,
        dir.path(),
        &["lint", "--json"],
        &[("PGPORT", "1".into())],
    );
    assert_eq!(
        found.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let found = json(&found);
    assert_eq!(found["findings"].as_array().unwrap().len(), 1);
    assert_eq!(found["findings"][0]["rule"], "create-index");
    assert_eq!(found["findings"][0]["line"], 1);
    let since = dbprep_on(&db, dir.path(), &["lint", "--since", "2"], &[]);
    assert_success(&since);
    assert_eq!(
        String::from_utf8_lossy(&since.stdout).trim(),
        "no statement that blocks traffic"
    );
    std::fs::write(
        dir.path().join("V4__typo.sql"),
        "-- dbprep:allow(create-indexes)\nSELECT 1;",
    )
    .unwrap();
    let typo = dbprep_on(&db, dir.path(), &["lint"], &[]);
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains(
            "V4__typo.sql:1: `-- dbprep:allow`: no rule is named \"create-indexes\"; the rules are create-index,"
        ),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
}

/// A DBA's walk over tenant schemas: a conflict fails alone under
/// `--on-failure continue` (exit 1, listed in the JSON), `status` shows it
/// pending, the rerun after the fix finishes it; `verify` takes the
/// tenants from a query, `upgrade` the databases from a file; tenant
/// options without tenants are usage errors.
#[tokio::test]
async fn upgrade_status_and_verify_over_tenants() {
    let db = database().await;
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in [
        ("V1__carts.sql", "CREATE TABLE carts (id bigint PRIMARY KEY, owner text);"),
        (
            "V2__carts_by_owner.sql",
            "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS carts_owner ON carts (owner);",
        ),
        ("V3__items.sql", "CREATE TABLE items (cart_id bigint REFERENCES carts, sku text);"),
    ] {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    let client = db.connect().await.unwrap();
    let schemas: Vec<String> = (1..=12)
        .map(|i| format!("CREATE SCHEMA shop_{i:02};"))
        .collect();
    client.batch_execute(&schemas.join("\n")).await.unwrap();
    client
        .batch_execute("CREATE TABLE shop_05.items (id int)")
        .await
        .unwrap();
    let each = ["--each-schema", "shop\\_%", "--jobs", "3"];

    let upgrade = dbprep_on(
        &db,
        dir.path(),
        &[
            &["upgrade", "--on-failure", "continue", "--json"][..],
            &each[..],
        ]
        .concat(),
        &[],
    );
    assert_eq!(upgrade.status.code(), Some(1));
    let report = json(&upgrade);
    assert_eq!(report["counts"]["migrated"], 11, "{report}");
    assert_eq!(report["counts"]["failed"], 1, "{report}");
    let failed = &report["tenants"][4];
    assert_eq!(failed["tenant"], "shop_05");
    assert_eq!(failed["state"], "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("V3__items.sql") && error.contains("already exists"),
        "{error}"
    );

    let status = dbprep_on(&db, dir.path(), &[&["status"][..], &each[..]].concat(), &[]);
    assert_success(&status);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("shop_05  at version 2, 1 pending"), "{text}");
    assert!(
        text.contains("11 up to date, 1 pending, 0 failed"),
        "{text}"
    );

    client
        .batch_execute("DROP TABLE shop_05.items")
        .await
        .unwrap();
    let rerun = dbprep_on(
        &db,
        dir.path(),
        &[&["upgrade", "--canary", "2"][..], &each[..]].concat(),
        &[],
    );
    assert_success(&rerun);
    let text = String::from_utf8_lossy(&rerun.stdout);
    assert!(
        text.contains("11 up to date, 1 migrated, 0 failed, 0 not started"),
        "{text}"
    );

    let verify = dbprep_on(
        &db,
        dir.path(),
        &[
            "verify",
            "--json",
            "--schemas-from",
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'shop%' ORDER BY 1",
        ],
        &[],
    );
    assert_success(&verify);
    assert_eq!(json(&verify)["counts"]["clean"], 12);

    // Database tenants from a file, comments and blank lines skipped.
    let admin = db.connect().await.unwrap();
    let names = [format!("{}_a", db.name()), format!("{}_b", db.name())];
    for name in &names {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    let list = dir.path().join("tenants.txt");
    std::fs::write(&list, format!("# tenants\n{}\n\n{}\n", names[0], names[1])).unwrap();
    let databases = dbprep_on(
        &db,
        dir.path(),
        &["upgrade", "--databases-from", list.to_str().unwrap()],
        &[],
    );
    assert_success(&databases);
    let text = String::from_utf8_lossy(&databases.stdout);
    assert!(text.contains("2 migrated"), "{text}");
    for name in &names {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }

    for usage in [
        &["upgrade", "--jobs", "2"][..],
        &["upgrade", "--canary", "1"][..],
        &["status", "--each-schema", "a%", "--each-database", "b%"][..],
        &[
            "upgrade",
            "--each-schema",
            "a%",
            "--on-failure",
            "sometimes",
        ][..],
    ] {
        let output = dbprep_on(&db, dir.path(), usage, &[]);
        assert_eq!(output.status.code(), Some(2), "{usage:?}");
    }
}

#[tokio::test]
async fn squash_lists_the_baseline_in_a_folder_that_pins_its_checksums() {
    let db = database().await;
    let dir = demo_migrations(|_| true);
    let folder = dir.path();
    let squash = dbprep_on(
        &db,
        folder,
        &[
            "squash",
            "--to",
            "4",
            "--out",
            folder.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_success(&squash);
    assert_eq!(json(&squash)["sum_updated"], true);
    let sum = std::fs::read_to_string(folder.join("dbprep.sum")).unwrap();
    assert!(
        sum.lines()
            .any(|line| line.starts_with("B4__baseline.sql ")),
        "{sum}"
    );
    // The folder is accepted as it is: a fresh database starts from the
    // baseline.
    let upgrade = dbprep_on(&db, folder, &["upgrade"], &[]);
    assert_success(&upgrade);
    assert!(
        String::from_utf8_lossy(&upgrade.stdout).contains("4  baseline"),
        "{}",
        String::from_utf8_lossy(&upgrade.stdout)
    );
}
