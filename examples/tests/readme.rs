//! README's shell blocks, run as README writes them: the quick start and
//! the operator's procedures, read from README itself so that the two
//! cannot drift apart, with the programs `cargo test` builds beside this
//! test (`examples/quickstart`, `examples/manager`, the standalone
//! `dbprep`) against PostgreSQL clusters started from the system's
//! binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use dbprep_runtime::testing::{Cluster, TestServer};

/// The workspace's root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples package is in the workspace")
        .to_path_buf()
}

/// The folder of the programs `cargo test` builds: tests run from its
/// `deps/`.
fn profile_dir() -> PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    test.parent()
        .and_then(Path::parent)
        .expect("tests run from <target>/<profile>/deps")
        .to_path_buf()
}

/// The folder of the examples' programs. Cargo builds a package's
/// examples before it runs the package's tests, into `examples/` beside
/// the tests' `deps/`.
fn examples_dir() -> PathBuf {
    profile_dir().join("examples")
}

/// Where `cargo test --workspace` builds the standalone `dbprep` program
/// (the examples turn on its `cli` feature).
fn dbprep_path() -> PathBuf {
    profile_dir().join(format!("dbprep{}", std::env::consts::EXE_SUFFIX))
}

/// The standalone `dbprep` program.
fn dbprep() -> PathBuf {
    let program = dbprep_path();
    assert!(
        program.exists(),
        "{} is missing: `cargo test --workspace` builds it (`cargo build -p dbprep-runtime --features cli` alone)",
        program.display()
    );
    program
}

/// The program of the example `name`.
fn example(name: &str) -> PathBuf {
    let program = examples_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        program.exists(),
        "{} is missing: `cargo test` builds the examples before the tests (`cargo build --examples` alone)",
        program.display()
    );
    program
}

/// README's text.
fn readme() -> String {
    std::fs::read_to_string(workspace().join("README.md")).expect("read README.md")
}

/// The first ```` ```sh ```` block of `readme` after the line that
/// contains `after`.
fn sh_block(readme: &str, after: &str) -> String {
    let start = readme
        .find(after)
        .unwrap_or_else(|| panic!("README no longer says {after:?}"));
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("a ```sh block follows") + "```sh\n".len();
    let close = rest[open..].find("```").expect("the block ends");
    rest[open..open + close].to_owned()
}

/// `command` without the PostgreSQL settings of the environment the tests
/// run in: the programs must find their server from what README sets.
fn without_postgres_settings(command: &mut Command) -> &mut Command {
    for variable in [
        "DATABASE_URL",
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGDATABASE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGSSLMODE",
        "PGOPTIONS",
    ] {
        command.env_remove(variable);
    }
    command
}

/// Run a README block with bash (stopping at the first failing command)
/// in `folder`, on `cluster`. README's host is a name of its own: the
/// cluster listens on the loopback address, at the port the environment
/// gives (libpq's `PGPORT`, which a URL without a port takes too), with
/// its `psql` first on the `PATH`. `manager` is the demo's binary, as
/// README says, `dbprep` the standalone program, and `cargo run
/// --example NAME -- …` the example's program, which `cargo test` has
/// built.
fn run_block(block: &str, cluster: &Cluster, folder: &Path, env: &[(&str, &str)]) -> Ran {
    let script = format!(
        r#"set -euo pipefail
manager() {{ "$MANAGER" "$@"; }}
dbprep() {{
    if [ ! -x "$DBPREP" ]; then
        echo "$DBPREP is missing: cargo test --workspace builds it" >&2
        return 2
    fi
    "$DBPREP" "$@"
}}
cargo() {{
    if [ "$1" != run ] || [ "$2" != --example ] || [ "$4" != -- ]; then
        echo "a README block runs cargo as it cannot here: cargo $*" >&2
        return 2
    fi
    local name="$3"
    shift 4
    "$EXAMPLES/$name" "$@"
}}
{}"#,
        block.replace("db.internal", "127.0.0.1")
    );
    let path = std::env::join_paths(std::iter::once(cluster.bin_dir().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("a PATH");
    let output = without_postgres_settings(&mut Command::new("bash"))
        .args(["-c", &script])
        .current_dir(folder)
        .env("PATH", path)
        .env("PGPORT", cluster.port().to_string())
        .env("MANAGER", example("manager"))
        .env("EXAMPLES", examples_dir())
        .env("DBPREP", dbprep_path())
        .envs(env.iter().copied())
        .output()
        .expect("run bash");
    let said = said(&output);
    assert!(output.status.success(), "{said}");
    Ran {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        said,
    }
}

/// What a README block that succeeded printed.
struct Ran {
    stdout: String,
    /// Its exit status and both outputs, for an assertion's message.
    said: String,
}

/// A connection to `database` of `cluster`.
async fn connect(cluster: &Cluster, database: &str) -> tokio_postgres::Client {
    let (client, connection) = cluster
        .config(database)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {database}: {e}"));
    tokio::spawn(connection);
    client
}

/// `manager` with `args` on `database` of `cluster`; what it printed.
fn manager(cluster: &Cluster, database: &str, args: &[&str]) -> String {
    let output = without_postgres_settings(&mut Command::new(example("manager")))
        .args(args)
        .env("DATABASE_URL", cluster.url(database))
        .output()
        .expect("run manager");
    assert!(
        output.status.success(),
        "manager {args:?}: {}",
        said(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a finished program wrote, for an assertion's message.
fn said(output: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The suite's throwaway cluster, or `None` when `DATABASE_URL` names
/// another server: README's procedures make a role and databases of fixed
/// names (`manager`), and the quick start starts a cluster of its own,
/// which a machine given a server may not be able to.
fn throwaway_cluster() -> Option<&'static Cluster> {
    match TestServer::get().expect("the tests' server") {
        TestServer::Cluster(cluster) => Some(cluster),
        TestServer::External(_) => None,
    }
}

/// A new folder holding a `migrations` folder of `files` (name, text),
/// and that `migrations` folder.
fn migrations_checkout(
    files: impl IntoIterator<Item = (String, String)>,
) -> (tempfile::TempDir, PathBuf) {
    let checkout = tempfile::tempdir().expect("a folder");
    let folder = checkout.path().join("migrations");
    std::fs::create_dir(&folder).expect("a migrations folder");
    for (name, text) in files {
        std::fs::write(folder.join(name), text).expect("write a migration");
    }
    (checkout, folder)
}

/// The files of the demo's migrations folder (name, text).
fn demo_files() -> Vec<(String, String)> {
    std::fs::read_dir(workspace().join("migrations"))
        .expect("read the demo migrations")
        .map(|entry| {
            let entry = entry.expect("a file");
            let text = std::fs::read_to_string(entry.path()).expect("read a file");
            (entry.file_name().to_string_lossy().into_owned(), text)
        })
        .collect()
}

/// How many versioned migrations the demo set has.
fn demo_migrations() -> usize {
    demo_files()
        .iter()
        .filter(|(name, _)| name.starts_with('V') && name.ends_with(".sql"))
        .count()
}

#[test]
fn the_quick_start_needs_no_configuration() {
    if throwaway_cluster().is_none() {
        return;
    }
    let quick_start = sh_block(&readme(), "## Quick start");
    assert!(
        quick_start.contains("cargo run --example quickstart"),
        "README's quick start runs the quickstart example:\n{quick_start}"
    );
    let output = without_postgres_settings(&mut Command::new(example("quickstart")))
        .output()
        .expect("run the quickstart");
    let text = said(&output);
    assert!(output.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let migrations = demo_migrations();
    for expected in [
        "DATABASE_URL is not set: starting a throwaway PostgreSQL".to_owned(),
        "created database manager".to_owned(),
        format!("applied {migrations} migration(s)"),
        "fixture 'example-keypairs':".to_owned(),
        format!("second start-up: database up to date at version {migrations}"),
    ] {
        assert!(stdout.contains(&expected), "no {expected:?} in:\n{text}");
    }
    // The throwaway cluster goes with the program: a process it leaves
    // behind stops the server and removes its files once the program has
    // exited (a fast shutdown takes a moment).
    let files = stdout
        .lines()
        .find_map(|line| line.split_once(", files in ").map(|(_, dir)| dir.trim()))
        .unwrap_or_else(|| panic!("the quickstart names the cluster's files:\n{text}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(files).exists() {
        assert!(
            Instant::now() < deadline,
            "{files} is left behind 30 s after the quickstart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_quick_start_uses_database_url_and_a_second_start_up_finds_nothing_to_do() {
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    let url = cluster.url("quickstart_app");
    let run = || {
        let output = without_postgres_settings(&mut Command::new(example("quickstart")))
            .env("DATABASE_URL", &url)
            .output()
            .expect("run the quickstart");
        assert!(output.status.success(), "{}", said(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let migrations = demo_migrations();
    let first = run();
    assert!(first.contains("created database quickstart_app"), "{first}");
    assert!(
        first.contains(&format!("applied {migrations} migration(s)")),
        "{first}"
    );
    assert!(!first.contains("throwaway"), "{first}");
    // The application starting again: the database exists and is current.
    let second = run();
    assert!(!second.contains("created database"), "{second}");
    assert!(
        second.starts_with(&format!("database up to date at version {migrations}")),
        "{second}"
    );
}

#[tokio::test]
async fn the_seed_procedure_runs_as_written() {
    const PASSWORD: &str = "seed-procedure-secret-7f3a";
    let procedure = sh_block(&readme(), "The seed procedure of the demo application");
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    // In the folder of an application checkout: its fixtures beside it.
    let checkout = tempfile::tempdir().expect("a folder");
    std::fs::create_dir(checkout.path().join("fixtures")).expect("a fixtures folder");
    std::fs::copy(
        workspace().join("fixtures/example-keypairs.json"),
        checkout.path().join("fixtures/example-keypairs.json"),
    )
    .expect("copy the fixture");
    let ran = run_block(
        &procedure,
        cluster,
        checkout.path(),
        &[("APP_PASSWORD", PASSWORD)],
    );
    assert!(
        !ran.said.contains(PASSWORD),
        "the password was shown:\n{}",
        ran.said
    );
    assert!(ran.stdout.contains("no drift"), "{}", ran.said);

    // What the procedure leaves: the application's database, owned by its
    // role, at the newest version, with the operator's copy of the keys.
    let row = connect(cluster, "manager")
        .await
        .query_one(
            "SELECT pg_catalog.pg_get_userbyid(d.datdba)::text, \
             (SELECT max(version) FROM public.dbprep_schema_history WHERE success), \
             (SELECT rows FROM public.dbprep_fixture_history WHERE name = 'my-keypairs'), \
             (SELECT count(*) FROM public.keypairs) \
             FROM pg_catalog.pg_database d WHERE d.datname = 'manager'",
            &[],
        )
        .await
        .expect("read what the procedure left");
    let owner: String = row.get(0);
    let version: i64 = row.get(1);
    let fixture_rows: i64 = row.get(2);
    let keypairs: i64 = row.get(3);
    assert_eq!(owner, "manager");
    assert_eq!(version, i64::try_from(demo_migrations()).unwrap());
    assert!(fixture_rows > 0, "the fixture loaded no rows");
    assert!(keypairs > 0, "no keypair was loaded");
}

#[test]
fn the_offline_sql_for_a_dba_runs_as_written() {
    let procedure = sh_block(&readme(), "### Offline SQL for a DBA");
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    // A database at version 3, as the block's comment says.
    manager(cluster, "postgres", &["create-database", "offline_app"]);
    manager(cluster, "offline_app", &["upgrade", "--to", "3"]);
    let folder = tempfile::tempdir().expect("a folder");
    run_block(
        &procedure,
        cluster,
        folder.path(),
        // The DBA's psql finds the database from its environment.
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGUSER", "postgres"),
            ("PGDATABASE", "offline_app"),
        ],
    );
    let newest = demo_migrations();
    // Afterwards verify finds nothing and the next start-up has nothing to
    // do.
    let verify = manager(cluster, "offline_app", &["verify"]);
    assert!(verify.contains("no drift"), "{verify}");
    let upgrade = manager(cluster, "offline_app", &["upgrade"]);
    assert!(
        upgrade.starts_with(&format!("database up to date at version {newest}")),
        "{upgrade}"
    );
    // The install script takes a fresh database to the newest version.
    manager(cluster, "postgres", &["create-database", "offline_fresh"]);
    let install = Command::new(cluster.bin_dir().join("psql"))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-f", "install.sql"])
        .arg(cluster.url("offline_fresh"))
        .current_dir(folder.path())
        .output()
        .expect("run psql");
    assert!(install.status.success(), "{}", said(&install));
    let upgrade = manager(cluster, "offline_fresh", &["upgrade"]);
    assert!(
        upgrade.starts_with(&format!("database up to date at version {newest}")),
        "{upgrade}"
    );
}

#[test]
fn going_back_runs_as_written() {
    let procedure = sh_block(&readme(), "### Going back: `downgrade`");
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    manager(cluster, "postgres", &["create-database", "going_back"]);
    manager(cluster, "going_back", &["upgrade"]);
    let folder = tempfile::tempdir().expect("a folder");
    run_block(
        &procedure,
        cluster,
        folder.path(),
        &[("DATABASE_URL", &cluster.url("going_back"))],
    );
    let status = manager(cluster, "going_back", &["status"]);
    let state = |version: &str| {
        status
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|words| words.first() == Some(&version))
            .and_then(|words| words.get(2).map(|state| (*state).to_owned()))
    };
    assert_eq!(state("3").as_deref(), Some("applied"), "{status}");
    assert_eq!(state("4").as_deref(), Some("pending"), "{status}");
    assert_eq!(state("5").as_deref(), Some("pending"), "{status}");
    // The demo's down files undo what their migrations did: up, down and
    // up again leave the same schema.
    let reversible = manager(cluster, "postgres", &["check-reversible"]);
    let every = format!(
        "{} reversible, 0 without a down, 0 not reversible",
        demo_migrations()
    );
    assert!(reversible.contains(&every), "{reversible}");
    let upgrade = manager(cluster, "going_back", &["upgrade"]);
    assert!(upgrade.contains("applied 2 migration(s)"), "{upgrade}");
    let verify = manager(cluster, "going_back", &["verify"]);
    assert!(verify.contains("no drift"), "{verify}");
}

#[tokio::test]
async fn many_tenants_run_as_written() {
    let procedure = sh_block(
        &readme(),
        "### Many tenants: `--each-schema`, `--each-database`",
    );
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    // The tenants the block names: schemas of one database, and databases
    // of the server, which the block's verify reads.
    manager(cluster, "postgres", &["create-database", "tenants_app"]);
    let client = connect(cluster, "tenants_app").await;
    let schemas = [
        "tenant_1", "tenant_2", "tenant_3", "tenant_4", "tenant_5", "tenant_6", "tenant_7",
    ];
    for schema in schemas {
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create a tenant schema");
    }
    // `_` is escaped in the pattern: not a tenant.
    client
        .batch_execute("CREATE SCHEMA tenantsx")
        .await
        .expect("create a schema");
    for shop in ["shop_1", "shop_2"] {
        manager(cluster, "postgres", &["create-database", shop]);
        manager(cluster, shop, &["upgrade"]);
    }
    let folder = tempfile::tempdir().expect("a folder");
    let Ran { stdout, said: text } = run_block(
        &procedure,
        cluster,
        folder.path(),
        &[("DATABASE_URL", &cluster.url("tenants_app"))],
    );
    let tenants = schemas.len();
    assert!(
        stdout.contains(&format!("{tenants} tenant(s) in"))
            && stdout.contains(&format!("{tenants} migrated, 0 failed")),
        "{text}"
    );
    assert!(
        stdout.contains(&format!("{tenants} up to date, 0 failed")),
        "{text}"
    );
    let verify: serde_json::Value = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("verify --json prints JSON last:\n{text}"));
    assert_eq!(verify["counts"]["clean"], 2, "{verify}");
    assert_eq!(verify["counts"]["failed"], 0, "{verify}");

    // Each tenant's history lives in its schema, at the newest version;
    // the schema the pattern leaves out has none.
    let newest = i64::try_from(demo_migrations()).unwrap();
    for schema in schemas {
        let version: i64 = client
            .query_one(
                &format!("SELECT max(version) FROM {schema}.dbprep_schema_history WHERE success"),
                &[],
            )
            .await
            .expect("read a tenant's history")
            .get(0);
        assert_eq!(version, newest, "{schema}");
    }
    let untouched: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tenantsx'",
            &[],
        )
        .await
        .expect("look at the schema left out")
        .get(0);
    assert_eq!(untouched, 0);
}

#[test]
fn pinning_checksums_runs_as_written() {
    let procedure = sh_block(&readme(), "### Pinning checksums: `dbprep.sum`");
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    // A checkout of the demo's migrations without their sum file.
    let demo = demo_files()
        .into_iter()
        .filter(|(name, _)| name != "dbprep.sum");
    let (checkout, folder) = migrations_checkout(demo);
    let sum = |ran: &Ran| {
        std::fs::read_to_string(folder.join("dbprep.sum"))
            .unwrap_or_else(|e| panic!("no dbprep.sum ({e}):\n{}", ran.said))
    };
    let written = run_block(&procedure, cluster, checkout.path(), &[]);
    assert!(
        written.stdout.contains("migrations/dbprep.sum updated"),
        "{}",
        written.said
    );
    let committed = std::fs::read_to_string(workspace().join("migrations/dbprep.sum"))
        .expect("read the demo's dbprep.sum");
    assert_eq!(
        sum(&written),
        committed,
        "the same file as the one committed"
    );

    let again = run_block(&procedure, cluster, checkout.path(), &[]);
    assert!(
        again.stdout.contains("migrations/dbprep.sum is current"),
        "{}",
        again.said
    );
    // A new migration is listed once the command runs again.
    std::fs::write(
        folder.join("V6__notes.sql"),
        "CREATE TABLE notes (body text);\n",
    )
    .expect("add a migration");
    let added = run_block(&procedure, cluster, checkout.path(), &[]);
    assert!(
        added.stdout.contains("migrations/dbprep.sum updated"),
        "{}",
        added.said
    );
    let listed = sum(&added);
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("V6__notes.sql ")),
        "{listed}"
    );
}

#[tokio::test]
async fn the_recovery_from_a_failed_concurrent_index_runs_as_written() {
    let procedure = sh_block(&readme(), "The recovery:");
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    // A unique index built concurrently on rows that are not unique: the
    // build fails and leaves the index INVALID, the migration dirty.
    let (checkout, _) = migrations_checkout([
        (
            "V1__codes.sql".to_owned(),
            "CREATE TABLE codes (code text);\nINSERT INTO codes VALUES ('a'), ('a');\n".to_owned(),
        ),
        (
            "V2__unique_codes.sql".to_owned(),
            "-- dbprep:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS codes_code ON codes (code);\n"
                .to_owned(),
        ),
    ]);
    manager(cluster, "postgres", &["create-database", "recovery"]);
    let url = cluster.url("recovery");
    let failed = without_postgres_settings(&mut Command::new(dbprep()))
        .arg("upgrade")
        .current_dir(checkout.path())
        .env("DATABASE_URL", &url)
        .output()
        .expect("run dbprep");
    let failure = said(&failed);
    assert!(
        !failed.status.success() && failure.contains("its history row is left dirty"),
        "{failure}"
    );
    // The cause fixed by hand.
    let client = connect(cluster, "recovery").await;
    client
        .batch_execute("DELETE FROM codes WHERE ctid = (SELECT max(ctid) FROM codes)")
        .await
        .expect("remove the duplicate");

    let ran = run_block(
        &procedure,
        cluster,
        checkout.path(),
        &[("DATABASE_URL", &url)],
    );
    for expected in [
        "dirty",
        "INVALID index public.codes_code",
        "dropped the INVALID index public.codes_code",
        "applied 1 migration(s)",
        "database at version 2",
    ] {
        assert!(
            ran.stdout.contains(expected),
            "no {expected:?} in:\n{}",
            ran.said
        );
    }
    let row = client
        .query_one(
            "SELECT i.indisvalid, (SELECT bool_and(success) FROM public.dbprep_schema_history) \
             FROM pg_catalog.pg_index i WHERE i.indexrelid = 'public.codes_code'::pg_catalog.regclass",
            &[],
        )
        .await
        .expect("look at the index");
    let (valid, all_succeeded): (bool, bool) = (row.get(0), row.get(1));
    assert!(valid && all_succeeded);
}

#[tokio::test]
async fn baselines_written_for_you_run_as_written() {
    let procedure = sh_block(&readme(), "### Baselines written for you");
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    // A checkout of the demo's migrations, with their sum file.
    let (checkout, folder) = migrations_checkout(demo_files());
    let ran = run_block(
        &procedure,
        cluster,
        checkout.path(),
        &[("DATABASE_URL", &cluster.url("postgres"))],
    );
    assert!(
        ran.stdout.contains("wrote migrations/B4__baseline.sql"),
        "{}",
        ran.said
    );
    let baseline = std::fs::read_to_string(folder.join("B4__baseline.sql")).expect("the baseline");
    assert!(
        baseline.contains("CREATE TABLE public.keypairs"),
        "{baseline}"
    );
    // The checkout's folder, baseline and sum, is what a fresh database
    // starts from.
    manager(cluster, "postgres", &["create-database", "from_baseline"]);
    let upgrade = without_postgres_settings(&mut Command::new(dbprep()))
        .arg("upgrade")
        .current_dir(checkout.path())
        .env("DATABASE_URL", cluster.url("from_baseline"))
        .output()
        .expect("run dbprep");
    let said = said(&upgrade);
    assert!(upgrade.status.success(), "{said}");
    assert!(
        said.contains("4  baseline") && said.contains("database at version 5"),
        "{said}"
    );
}

#[tokio::test]
async fn switching_from_sqlx_runs_as_written() {
    let procedure = sh_block(&readme(), "### Switching from another tool: `adopt`");
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    // A database sqlx migrated to version 3 with the demo's files: their
    // SQL run, and sqlx's history of them (a SHA-384 of each file).
    manager(cluster, "postgres", &["create-database", "from_sqlx"]);
    let client = connect(cluster, "from_sqlx").await;
    client
        .batch_execute(
            "CREATE TABLE _sqlx_migrations (
                version BIGINT PRIMARY KEY,
                description TEXT NOT NULL,
                installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
                success BOOLEAN NOT NULL,
                checksum BYTEA NOT NULL,
                execution_time BIGINT NOT NULL
            )",
        )
        .await
        .expect("make sqlx's history");
    for (version, file) in [
        (1_i64, "V1__domains_and_groups.sql"),
        (2, "V2__users.sql"),
        (3, "V3__keypairs.sql"),
    ] {
        let sql = std::fs::read_to_string(workspace().join("migrations").join(file))
            .expect("read a demo migration");
        client.batch_execute(&sql).await.expect("apply a migration");
        client
            .execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ($1, $2, true, pg_catalog.sha384($3), 1000000)",
                &[&version, &file, &sql.as_bytes()],
            )
            .await
            .expect("record it as sqlx does");
    }
    let folder = tempfile::tempdir().expect("a folder");
    let ran = run_block(
        &procedure,
        cluster,
        folder.path(),
        &[("DATABASE_URL", &cluster.url("from_sqlx"))],
    );
    assert!(
        ran.stdout
            .contains("adopted 3 version(s) from sqlx's history")
            && ran.stdout.contains("applied 2 migration(s)")
            && ran.stdout.contains("database at version 5"),
        "{}",
        ran.said
    );
    let verify = manager(cluster, "from_sqlx", &["verify"]);
    assert!(verify.contains("no drift"), "{verify}");
}

#[test]
fn an_applications_binary_names_itself_in_its_hints() {
    // README: an application's binary prints its own commands, under its
    // name; so do the hints that tell what to run.
    let Some(cluster) = throwaway_cluster() else {
        return;
    };
    let output = without_postgres_settings(&mut Command::new(example("manager")))
        .arg("check")
        .env("DATABASE_URL", cluster.url("not_made_yet"))
        .output()
        .expect("run manager");
    let hint = said(&output);
    assert!(!output.status.success(), "{hint}");
    assert!(
        hint.contains("create it: `manager create-database NAME` or `manager oneshot`"),
        "{hint}"
    );
    let completions = without_postgres_settings(&mut Command::new(example("manager")))
        .args(["completions", "bash"])
        .output()
        .expect("run manager");
    assert!(
        String::from_utf8_lossy(&completions.stdout).contains("complete -F _manager"),
        "{}",
        said(&completions)
    );
}

#[tokio::test]
async fn moving_a_sqlite_database_in_runs_as_written() {
    let procedure = sh_block(&readme(), "## Moving a SQLite database in");
    if throwaway_cluster().is_none() {
        return;
    }
    // A cluster of its own: the block makes a database named `manager`,
    // as the seed procedure does on the suite's cluster.
    let cluster = Cluster::start().expect("a throwaway cluster");
    // What "as above" made: the application's role.
    connect(&cluster, "postgres")
        .await
        .batch_execute("CREATE ROLE manager LOGIN")
        .await
        .expect("create the application's role");
    // The old application's SQLite file, at version 3 of the schema.
    let folder = tempfile::tempdir().expect("a folder");
    let file = folder.path().join("manager.db");
    let sqlite = rusqlite::Connection::open(&file).expect("create a SQLite file");
    sqlite
        .execute_batch(
            "CREATE TABLE domains (name TEXT PRIMARY KEY, description TEXT, is_active INTEGER);
             INSERT INTO domains VALUES ('default', 'The default domain', 1), ('lab', NULL, 0);
             CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT, email TEXT, domain_name TEXT);
             INSERT INTO users VALUES ('f38dea2350fa42a0b5ae338f5f4693f4', 'admin', 'admin@example.com', 'default');
             CREATE TABLE schema_migrations (version TEXT);",
        )
        .expect("fill the SQLite file");
    drop(sqlite);
    // README's file is where the old application kept it; the admin
    // connection is the seed procedure's.
    let block = procedure.replace("/var/lib/manager/manager.db", file.to_str().unwrap());
    let ran = run_block(
        &block,
        &cluster,
        folder.path(),
        &[("PGHOST", "127.0.0.1"), ("PGUSER", "postgres")],
    );
    for expected in [
        "created database manager",
        "imported 3 rows",
        "only in SQLite (not copied): schema_migrations",
        "no drift",
    ] {
        assert!(
            ran.stdout.contains(expected),
            "no {expected:?} in:\n{}",
            ran.said
        );
    }
    let client = connect(&cluster, "manager").await;
    let row = client
        .query_one(
            "SELECT (SELECT string_agg(name || ':' || is_active, ',' ORDER BY name) FROM domains), \
             (SELECT id::text FROM users), \
             (SELECT max(version) FROM dbprep_schema_history WHERE success), \
             (SELECT pg_catalog.pg_get_userbyid(datdba)::text FROM pg_catalog.pg_database WHERE datname = 'manager')",
            &[],
        )
        .await
        .expect("read what was imported");
    let (domains, user, version, owner): (String, String, i64, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(domains, "default:true,lab:false");
    assert_eq!(user, "f38dea23-50fa-42a0-b5ae-338f5f4693f4");
    assert_eq!(version, i64::try_from(demo_migrations()).unwrap());
    assert_eq!(owner, "manager");
}
