//! The conventions operators bring: shell completions, the manual page,
//! libpq's service file, a team's `dbprep.toml`.

use super::*;

/// `dbprep` alone, without a database.
fn dbprep_offline(args: &[&str]) -> Output {
    Command::new(DBPREP)
        .args(args)
        .output()
        .expect("run dbprep")
}

#[test]
fn bash_completes_subcommands_and_options_from_the_script_it_prints() {
    let script = dbprep_offline(&["completions", "bash"]);
    assert_success(&script);
    let script = String::from_utf8(script.stdout).unwrap();
    if Command::new("bash").arg("--version").output().is_err() {
        eprintln!("skipped the completion run: no bash");
        return;
    }
    // What bash does on TAB: the function the script registered, with the
    // words typed so far.
    let complete = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "{script}\nCOMP_WORDS=({})\nCOMP_CWORD={}\n_dbprep dbprep '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words.get(words.len().wrapping_sub(2)).copied().unwrap_or(""),
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(program)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(complete("dbprep upg"), ["upgrade"]);
    let options = complete("dbprep upgrade --");
    for option in ["--to", "--each-schema", "--migrations", "--lock-timeout"] {
        assert!(
            options.iter().any(|o| o == option),
            "{option} in {options:?}"
        );
    }
    let shells = complete("dbprep completions ");
    assert!(shells.iter().any(|s| s == "zsh"), "{shells:?}");

    let zsh = dbprep_offline(&["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef dbprep"));
    let bad = dbprep_offline(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}

/// `dbprep … | head -1`: the reader goes away before the program has
/// written everything. Like any Unix tool, it stops writing and exits as
/// it would have, without a panic; a failure that is not a closed pipe is
/// reported.
#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    let folder = workspace().join("migrations");
    let folder = folder.to_str().unwrap();
    for args in [
        &["--migrations", folder, "sql"][..],
        &["man"],
        &["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(DBPREP)
            .args(args)
            .stdout(writer)
            .output()
            .expect("run dbprep");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // A full disk behind `> file` is an error, said once.
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        let out = Command::new(DBPREP)
            .args(["--migrations", folder, "sql"])
            .stdout(full)
            .output()
            .expect("run dbprep");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.trim(),
            "error: cannot write to standard output: No space left on device (os error 28)"
        );
    }
}

#[test]
fn the_manual_page_lists_every_subcommand_and_the_folder_options() {
    let out = dbprep_offline(&["man"]);
    assert_success(&out);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH dbprep 1"), "{page}");
    let mut names = vec!["upgrade", "verify", "completions"];
    // A subcommand of the `sqlite` feature, which `cargo test --workspace`
    // turns on (the examples use it) and `-p dbprep-runtime` alone does
    // not.
    if cfg!(feature = "sqlite") {
        names.push("import\\-sqlite");
    }
    for name in names {
        assert!(page.contains(name), "{name} missing from the page");
    }
    assert!(page.contains("\\-\\-migrations"), "{page}");
    // Rendered as `man` would, when the machine has it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dbprep.1");
    std::fs::write(&file, &page).unwrap();
    match Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "80")
        .output()
    {
        Ok(rendered) if rendered.status.success() => {
            let text = String::from_utf8_lossy(&rendered.stdout);
            assert!(text.contains("SUBCOMMANDS"), "{text}");
        }
        _ => eprintln!("skipped rendering the page: no man"),
    }
}

/// `dbprep` with a clean libpq environment and `HOME` set to `home`, so
/// that only what the test gives counts.
fn dbprep_at_home(home: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(DBPREP);
    for name in [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGSSLMODE",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLROOTCERT",
        "PGPASSFILE",
    ] {
        command.env_remove(name);
    }
    command
        .arg("--migrations")
        .arg(workspace().join("migrations"))
        .args(args)
        .env("HOME", home)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run dbprep")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A server that logs `certuser` in by its certificate alone (libpq's
/// `cert` method): the certificate and key from the URL, from `PGSSLCERT`
/// and `PGSSLKEY`, and from `~/.postgresql/`, as libpq finds them.
#[tokio::test]
async fn a_client_certificate_logs_in_where_the_server_asks_for_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let hba = dir.path().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhost all postgres 127.0.0.1/32 trust\n",
    )
    .unwrap();
    std::fs::set_permissions(&hba, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ca = dir.path().join("ca.pem").display().to_string();
    let cluster = tls_cluster(
        dir.path(),
        &[
            ("ssl_ca_file", &ca),
            ("hba_file", &hba.display().to_string()),
        ],
    );
    let (admin, connection) = cluster
        .config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for statement in [
        "CREATE ROLE certuser LOGIN",
        "CREATE DATABASE app OWNER certuser",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    let cert = dir.path().join("client.crt").display().to_string();
    let key = dir.path().join("client.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = key.display().to_string();
    let home = tempfile::tempdir().unwrap();
    let url = |query: &str| {
        format!(
            "postgres://certuser@127.0.0.1:{}/app?sslmode=verify-ca&sslrootcert={ca}{query}",
            cluster.port()
        )
    };

    // Named in the URL.
    let check = dbprep_at_home(
        home.path(),
        &[
            "check",
            "--url",
            &url(&format!("&sslcert={cert}&sslkey={key}")),
        ],
        &[],
    );
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("encrypted"), "{}", text(&check));
    // From the variables: the set migrates as certuser.
    let env = [("PGSSLCERT", cert.clone()), ("PGSSLKEY", key.clone())];
    let upgrade = dbprep_at_home(home.path(), &["upgrade", "--url", &url("")], &env);
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    let (app, connection) = cluster
        .config("app")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let owner: String = app
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'users'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "certuser");
    // Without a certificate the server refuses, and says why.
    let refused = dbprep_at_home(home.path(), &["status", "--url", &url("")], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("certificate"), "{}", text(&refused));
    // libpq's default place: ~/.postgresql/postgresql.crt and .key.
    let folder = home.path().join(".postgresql");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(&cert, folder.join("postgresql.crt")).unwrap();
    std::fs::copy(&key, folder.join("postgresql.key")).unwrap();
    std::fs::set_permissions(
        folder.join("postgresql.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let status = dbprep_at_home(home.path(), &["status", "--url", &url("")], &[]);
    assert!(status.status.success(), "{}", text(&status));
    // A key others may read is refused before connecting, as libpq does.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shared = dbprep_at_home(home.path(), &["status", "--url", &url("")], &env);
    assert_eq!(shared.status.code(), Some(1));
    assert!(
        text(&shared).contains(&format!("private key file {key} has group or world access")),
        "{}",
        text(&shared)
    );
    // A certificate without its key is named.
    let keyless = dbprep_at_home(
        tempfile::tempdir().unwrap().path(),
        &["status", "--url", &url(&format!("&sslcert={cert}"))],
        &[],
    );
    assert!(
        text(&keyless).contains("without its key"),
        "{}",
        text(&keyless)
    );
}

/// libpq's service file, as an operator keeps one: the service named by
/// `PGSERVICE`, by `service=` in a key-value string and in a URL, from
/// `PGSERVICEFILE` or `~/.pg_service.conf`; the connection string wins
/// over the service.
#[tokio::test]
async fn a_service_from_the_service_file_names_the_database() {
    let db = database().await;
    let config = db.config();
    let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() else {
        panic!("a TCP test server");
    };
    let mut service = format!(
        "# the team's services\n[app]\nhost={host}\nport={}\ndbname={}\nuser={}\n",
        config.get_ports()[0],
        db.name(),
        config.get_user().unwrap_or("postgres"),
    );
    if let Some(password) = config.get_password() {
        service.push_str(&format!("password={}\n", String::from_utf8_lossy(password)));
    }
    service.push_str("\n[elsewhere]\nhost=192.0.2.1\n");
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("services.conf");
    std::fs::write(&file, &service).unwrap();
    let file_env = [("PGSERVICEFILE", file.display().to_string())];

    let upgrade = dbprep_at_home(
        home.path(),
        &["upgrade", "--json"],
        &[file_env[0].clone(), ("PGSERVICE", "app".into())],
    );
    assert!(upgrade.status.success(), "{}", text(&upgrade));
    let applied = json(&upgrade)["applied"].as_array().unwrap().len();
    assert!(applied > 0, "{}", text(&upgrade));
    for url in ["service=app", "postgres:///?service=app"] {
        let status = dbprep_at_home(home.path(), &["status", "--url", url], &file_env);
        assert!(status.status.success(), "{url}: {}", text(&status));
    }
    // The URL's database wins over the service's.
    let other = dbprep_at_home(
        home.path(),
        &["status", "--url", "service=app dbname=no_such_database"],
        &file_env,
    );
    assert!(
        text(&other).contains("no_such_database"),
        "{}",
        text(&other)
    );
    // ~/.pg_service.conf when PGSERVICEFILE is not set.
    std::fs::rename(&file, home.path().join(".pg_service.conf")).unwrap();
    let status = dbprep_at_home(home.path(), &["status", "--url", "service=app"], &[]);
    assert!(status.status.success(), "{}", text(&status));
    // A service no file defines is named, with where it was looked for.
    let missing = dbprep_at_home(
        home.path(),
        &["status"],
        &[
            ("PGSERVICE", "payroll".into()),
            ("PGSYSCONFDIR", home.path().display().to_string()),
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("definition of service \"payroll\" not found"),
        "{}",
        text(&missing)
    );
}

/// The states `status --json` gives, in version order.
fn states(output: &Output) -> Vec<String> {
    assert_success(output);
    json(output)["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap().to_owned())
        .collect()
}

/// A team's `dbprep.toml` beside the migrations sets the history's place;
/// the environment wins over the file and a flag over both; `--config`
/// names another file; a bad file stops everything, naming file and line.
#[tokio::test]
async fn dbprep_toml_beside_the_migrations_with_flags_and_environment_winning() {
    let db = database().await;
    let project = tempfile::tempdir().unwrap();
    let folder = project.path().join("migrations");
    std::fs::create_dir(&folder).unwrap();
    for entry in std::fs::read_dir(workspace().join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        project.path().join("dbprep.toml"),
        "# shared by the team\nhistory_schema = \"ops\"\nhistory_table = \"team_history\"\nlock_timeout = \"5s\"\n",
    )
    .unwrap();
    let run = |args: &[&str], env: &[(&str, String)]| dbprep_on(&db, &folder, args, env);

    assert_success(&run(&["upgrade"], &[]));
    let recorded: i64 = db
        .connect()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM ops.team_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 5);
    assert!(states(&run(&["status", "--json"], &[]))
        .iter()
        .all(|s| s == "applied"));
    // The environment wins over the file: another history, all pending.
    let env = [("DBPREP_HISTORY_SCHEMA", "elsewhere".to_owned())];
    assert!(states(&run(&["status", "--json"], &env))
        .iter()
        .all(|s| s == "pending"));
    // A flag wins over both.
    let flagged = run(&["status", "--json", "--history-schema", "ops"], &env);
    assert!(states(&flagged).iter().all(|s| s == "applied"));
    // --config names a file elsewhere; its settings replace the found one's.
    let other = project.path().join("other.toml");
    std::fs::write(&other, "history_table = \"other_history\"\n").unwrap();
    let other = other.display().to_string();
    let states_other = states(&run(&["status", "--json", "--config", &other], &[]));
    assert!(
        states_other.iter().all(|s| s == "pending"),
        "{states_other:?}"
    );

    // A bad value is named with its file and line, and nothing runs.
    std::fs::write(
        project.path().join("dbprep.toml"),
        "history_schema = \"ops\"\nout_of_order = \"sometimes\"\n",
    )
    .unwrap();
    let bad = run(&["upgrade"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("dbprep.toml:2: `out_of_order = \"sometimes\"` is not a valid setting")
            && message.contains("`error` (refuse), `warn`"),
        "{message}"
    );
    std::fs::write(
        project.path().join("dbprep.toml"),
        "url = \"postgres://x\"\n",
    )
    .unwrap();
    let bad = run(&["status"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("`url` is not a setting of dbprep.toml"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// README's `dbprep.toml` is accepted as written.
#[test]
fn the_readme_settings_file_is_accepted() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README shows a dbprep.toml");
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("migrations")).unwrap();
    std::fs::write(
        project.path().join("migrations/V1__t.sql"),
        "CREATE TABLE t (id int);\n",
    )
    .unwrap();
    std::fs::write(project.path().join("dbprep.toml"), block).unwrap();
    let out = Command::new(DBPREP)
        .arg("sql")
        .current_dir(project.path())
        .output()
        .unwrap();
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"ops\".\"schema_history\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Headless Chromium, if the machine has it.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        })
}

/// `dbprep report --html` on a database with drift, an INVALID index and
/// a populated fixture, opened in a real browser: the page it renders
/// names every migration, the drift, the index, the fixture and the
/// tables with their foreign keys; it is one file that fetches nothing.
#[tokio::test]
async fn the_html_report_renders_in_a_browser_with_migrations_drift_and_tables() {
    let db = database().await;
    assert_success(&dbprep(&db, &["upgrade"]));
    assert_success(&dbprep(&db, &["fixture", "populate", "example-keypairs"]));
    let client = db.connect().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE users ADD COLUMN nickname text;
             CREATE TABLE dup (x int); INSERT INTO dup VALUES (1), (1);",
        )
        .await
        .unwrap();
    // A unique index that cannot be built stays INVALID.
    assert!(client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY dup_x ON dup (x)")
        .await
        .is_err());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    let file_arg = file.display().to_string();
    let out = dbprep(&db, &["report", "--html", &file_arg]);
    assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("drift finding(s)"),
        "{}",
        text(&out)
    );
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(!html.contains("<script"), "the page runs no script");
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("src="),
        "the page fetches nothing"
    );
    // A second report of the same database replaces the file whole.
    assert_success(&dbprep(&db, &["report", "--html", &file_arg]));
    assert!(!dir.path().join("report.html.partial").exists());

    let Some(browser) = chromium() else {
        eprintln!("skipped the browser half: no chromium on this machine (CI installs it)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let out = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", file.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        out
    };
    let dom = String::from_utf8(run(&["--dump-dom"]).stdout).unwrap();
    for name in [
        "domains_and_groups",
        "users",
        "keypairs",
        "touch_modified_at",
        "index_keypairs_by_user",
    ] {
        assert!(
            dom.contains(&format!(">{name}</td>")),
            "{name} not rendered"
        );
    }
    assert!(dom.contains("column public.users.nickname added"), "{dom}");
    assert!(dom.contains("table public.dup added"), "{dom}");
    assert!(dom.contains("dup_x"), "the INVALID index is not listed");
    assert!(
        dom.contains("example-keypairs") && dom.contains(">populated<"),
        "{dom}"
    );
    assert!(dom.contains("<h3>public.keypairs</h3>"), "{dom}");
    assert!(dom.contains("REFERENCES public.users(id)"), "{dom}");

    let png = dir.path().join("report.png");
    run(&[
        "--window-size=1200,1600",
        &format!("--screenshot={}", png.display()),
    ]);
    let image = std::fs::read(&png).unwrap();
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(image.len() > 20_000, "a blank page? {} bytes", image.len());
}
