//! Drift: edited, unknown, out-of-order and dirty migrations, and schema
//! changes made by hand, each found by `verify` and held to its policy.

use dbprep_runtime::testing::TestDatabase;
use dbprep_runtime::{Drift, Error, Finding, Migrations, Migrator, Policy};

use crate::support::{
    database, drop_role, login_role, migrations, scalar, stored_snapshot, STORED_OBJECTS,
};

const USERS: &str = "CREATE TABLE users (id int PRIMARY KEY, email text);\nCREATE INDEX ix_users_email ON users (email);";
const AUDIT: &str =
    "CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;";

fn three() -> Migrations {
    migrations(&[
        ("V1__users.sql", USERS),
        ("V2__audit.sql", AUDIT),
        ("V3__t.sql", "CREATE TABLE t (a int);"),
    ])
}

/// Run `sql` by hand, then verify: the schema changes found (and nothing
/// else).
async fn changes_after(db: &TestDatabase, migrator: &Migrator<'_>, sql: &str) -> Vec<String> {
    db.connect()
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap();
    let report = migrator.verify(db.pool()).await.unwrap();
    let [Drift::Schema { changes }] = &report.errors().collect::<Vec<_>>()[..] else {
        panic!("{report}")
    };
    changes.clone()
}

/// Add a column to `t` by hand, then verify: the schema changes found.
async fn hand_made_column(db: &TestDatabase, migrator: &Migrator<'_>) -> Vec<String> {
    changes_after(db, migrator, "ALTER TABLE t ADD COLUMN by_hand int").await
}

#[tokio::test]
async fn a_freshly_migrated_database_verifies_clean() {
    let db = database().await;
    let m = three();
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    let report = Migrator::new(&m).verify(db.pool()).await.unwrap();
    assert!(report.findings.is_empty(), "{report}");
    assert!(report.notes.is_empty(), "{report}");
    assert!(report.is_clean());
    assert_eq!(report.version, Some(3));
}

#[tokio::test]
async fn an_edited_migration_is_reported_with_both_checksums() {
    let db = database().await;
    let _ = Migrator::new(&three()).run(db.pool()).await.unwrap();
    let edited = migrations(&[
        ("V1__users.sql", USERS),
        ("V2__audit.sql", "CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"),
        ("V3__t.sql", "CREATE TABLE t (a int);"),
    ]);
    let report = Migrator::new(&edited).verify(db.pool()).await.unwrap();
    assert!(!report.is_clean());
    let [drift] = report.errors().collect::<Vec<_>>()[..] else {
        panic!("{report}")
    };
    let Drift::Edited {
        version: 2,
        applied,
        embedded,
        ..
    } = drift
    else {
        panic!("{report}")
    };
    assert_eq!(embedded, &edited.get(2).unwrap().checksum().to_string());
    assert_eq!(applied, &three().get(2).unwrap().checksum().to_string());
    // run refuses by default, and goes on when told to warn.
    let error = Migrator::new(&edited).run(db.pool()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Drift(d) if matches!(d[..], [Drift::Edited { version: 2, .. }])),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("V2__audit.sql) was edited after it was applied"),
        "{error}"
    );
    let _ = Migrator::new(&edited)
        .on_edited(Policy::Warn)
        .run(db.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_older_binary_starts_on_a_newer_database_and_touches_nothing() {
    // A rolling deployment, or a rollback: the database has a version
    // newer than every one this binary embeds.
    let db = database().await;
    let _ = Migrator::new(&three()).run(db.pool()).await.unwrap();
    let older = migrations(&[("V1__users.sql", USERS), ("V2__audit.sql", AUDIT)]);
    let report = Migrator::new(&older).verify(db.pool()).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.findings,
        [Finding {
            drift: Drift::Unknown {
                version: 3,
                name: "t".into()
            },
            policy: Policy::Warn
        }]
    );
    let client = db.connect().await.unwrap();
    let before = scalar(
        &client,
        "SELECT xmin::text FROM dbprep_schema_history_digest",
    )
    .await;
    let report = Migrator::new(&older).run(db.pool()).await.unwrap();
    assert!(report.was_up_to_date());
    assert_eq!(report.version, Some(3));
    assert_eq!(report.lock, None, "it took the lock");
    let after = scalar(
        &client,
        "SELECT xmin::text FROM dbprep_schema_history_digest",
    )
    .await;
    assert_eq!(before, after, "it wrote the digest");
    // The strict behaviour, on request.
    let strict = Migrator::new(&older).on_unknown(Policy::Error);
    let error = strict.run(db.pool()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Drift(d) if matches!(d[..], [Drift::Unknown { version: 3, .. }])),
        "{error}"
    );
    assert!(!strict.verify(db.pool()).await.unwrap().is_clean());
}

#[tokio::test]
async fn an_unknown_version_between_known_ones_is_an_error() {
    // A deleted or renamed file, not a newer binary's migration.
    let db = database().await;
    let _ = Migrator::new(&three()).run(db.pool()).await.unwrap();
    let gap = migrations(&[
        ("V1__users.sql", USERS),
        ("V3__t.sql", "CREATE TABLE t (a int);"),
    ]);
    let error = Migrator::new(&gap).run(db.pool()).await.unwrap_err();
    assert!(
        matches!(&error, Error::Drift(d) if matches!(d[..], [Drift::Unknown { version: 2, .. }])),
        "{error}"
    );
    let report = Migrator::new(&gap).verify(db.pool()).await.unwrap();
    assert!(
        matches!(
            report.errors().collect::<Vec<_>>()[..],
            [Drift::Unknown { version: 2, .. }]
        ),
        "{report}"
    );
    let _ = Migrator::new(&gap)
        .on_unknown(Policy::Allow)
        .run(db.pool())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_out_of_order_pending_migration_is_reported() {
    let db = database().await;
    let gap = migrations(&[
        ("V1__users.sql", USERS),
        ("V3__t.sql", "CREATE TABLE t (a int);"),
    ]);
    let _ = Migrator::new(&gap).run(db.pool()).await.unwrap();
    let report = Migrator::new(&three()).verify(db.pool()).await.unwrap();
    assert_eq!(report.pending, [2]);
    assert!(
        matches!(
            report.errors().collect::<Vec<_>>()[..],
            [Drift::OutOfOrder {
                version: 2,
                newest_applied: 3,
                ..
            }]
        ),
        "{report}"
    );
    let allowed = Migrator::new(&three())
        .out_of_order(Policy::Allow)
        .verify(db.pool())
        .await
        .unwrap();
    assert!(allowed.is_clean());
}

#[tokio::test]
async fn a_dirty_migration_is_reported() {
    let db = database().await;
    let m = migrations(&[
        (
            "V1__users.sql",
            "CREATE TABLE users (id int);\nINSERT INTO users VALUES (1), (1);",
        ),
        (
            "V2__ix.sql",
            "-- dbprep:no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY ix ON users (id);",
        ),
    ]);
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap_err();
    let report = Migrator::new(&m).verify(db.pool()).await.unwrap();
    let errors = report.errors().collect::<Vec<_>>();
    assert!(
        matches!(errors[0], Drift::Dirty { version: 2, .. }),
        "{report}"
    );
    // The leftover of the failed CREATE INDEX CONCURRENTLY is named, and
    // seen in the schema too.
    let Drift::InvalidIndex(index) = errors[1] else {
        panic!("{report}")
    };
    assert_eq!(index.to_string(), "public.ix on users");
    let Drift::Schema { changes } = errors[2] else {
        panic!("{report}")
    };
    assert_eq!(changes, &["index public.ix added"]);
}

#[tokio::test]
async fn hand_made_schema_changes_are_itemized() {
    let db = database().await;
    let m = migrations(&[
        ("V1__users.sql", USERS),
        ("V2__audit.sql", AUDIT),
        (
            "V3__f.sql",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
        ),
    ]);
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    let changes = changes_after(
        &db,
        &Migrator::new(&m),
        "ALTER TABLE users ADD COLUMN nickname text;
         DROP INDEX ix_users_email;
         CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 2';
         CREATE TRIGGER users_audit BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION audit();",
    )
    .await;
    assert_eq!(
        changes,
        [
            "column public.users.nickname added",
            "index public.ix_users_email dropped",
            "trigger public.users.users_audit added",
            "function public.f() body changed",
        ]
    );
    // run checks the schema only when asked.
    assert!(Migrator::new(&m).run(db.pool()).await.is_ok());
    let error = Migrator::new(&m)
        .check_schema_on_run(true)
        .run(db.pool())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("column public.users.nickname added"),
        "{error}"
    );
    let warned = Migrator::new(&m)
        .on_schema_drift(Policy::Warn)
        .verify(db.pool())
        .await
        .unwrap();
    assert!(warned.is_clean() && !warned.findings.is_empty());
}

#[tokio::test]
async fn a_run_that_changes_only_data_keeps_the_snapshot_and_moves_its_version() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let mut files = vec![
        ("V1__users.sql", USERS),
        ("V2__audit.sql", AUDIT),
        ("V3__t.sql", "CREATE TABLE t (a int);"),
    ];
    let _ = Migrator::new(&three()).run(db.pool()).await.unwrap();
    let before = stored_snapshot(&client).await;
    let objects = before.strip_prefix("3 true ").unwrap().to_owned();

    files.push(("V4__rows.sql", "INSERT INTO t VALUES (1), (2);"));
    let _ = Migrator::new(&migrations(&files))
        .run(db.pool())
        .await
        .unwrap();
    assert_eq!(stored_snapshot(&client).await, format!("4 true {objects}"));
    // The kept snapshot still says what a hand-made change did.
    let changes = hand_made_column(&db, &Migrator::new(&migrations(&files))).await;
    assert_eq!(changes, ["column public.t.by_hand added"]);
    client
        .batch_execute("ALTER TABLE t DROP COLUMN by_hand")
        .await
        .unwrap();

    // A schema change refreshes the snapshot.
    files.push(("V5__b.sql", "ALTER TABLE t ADD COLUMN b int;"));
    let _ = Migrator::new(&migrations(&files))
        .run(db.pool())
        .await
        .unwrap();
    let after = stored_snapshot(&client).await;
    assert!(
        after.starts_with("5 true ") && after != format!("5 true {objects}"),
        "{after}"
    );
    let report = Migrator::new(&migrations(&files))
        .verify(db.pool())
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{report}");
}

#[tokio::test]
async fn runs_without_a_snapshot_still_let_verify_see_a_schema_change() {
    let defined = "SELECT count(*) FILTER (WHERE definition IS NOT NULL) || ' of ' || count(*) \
                   FROM public.dbprep_schema_snapshot WHERE section <> ''";
    let m = three();
    let without = Migrator::new(&m).schema_snapshot(false);
    let db = database().await;
    let client = db.connect().await.unwrap();
    let _ = without.run(db.pool()).await.unwrap();
    assert!(stored_snapshot(&client).await.starts_with("3 false "));
    // Which objects exist, not what they are: users, its primary key (a
    // constraint and an index) and other index, t, and the function.
    assert_eq!(scalar(&client, defined).await.as_deref(), Some("0 of 6"));
    let report = without.verify(db.pool()).await.unwrap();
    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(
        hand_made_column(&db, &without).await,
        ["the schema changed since the last run; it stored no snapshot (schema_snapshot(false)) to say what changed"]
    );

    // A run with snapshots takes one whole after a run without, even when
    // its migrations change only data, and itemizes again.
    let db = database().await;
    let client = db.connect().await.unwrap();
    let _ = without.run(db.pool()).await.unwrap();
    let four = migrations(&[
        ("V1__users.sql", USERS),
        ("V2__audit.sql", AUDIT),
        ("V3__t.sql", "CREATE TABLE t (a int);"),
        ("V4__rows.sql", "INSERT INTO t VALUES (1);"),
    ]);
    let _ = Migrator::new(&four).run(db.pool()).await.unwrap();
    assert!(stored_snapshot(&client).await.starts_with("4 true "));
    assert_eq!(scalar(&client, defined).await.as_deref(), Some("6 of 6"));
    assert_eq!(
        hand_made_column(&db, &Migrator::new(&four)).await,
        ["column public.t.by_hand added"]
    );
}

#[tokio::test]
async fn the_snapshot_ignores_dropped_columns_and_is_stable() {
    let db = database().await;
    let m = migrations(&[
        ("V1__t.sql", "CREATE TABLE t (a int, b int, c int);"),
        ("V2__drop.sql", "ALTER TABLE t DROP COLUMN b;"),
    ]);
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    // The same live schema built without the dropped column in between.
    let client = db.connect().await.unwrap();
    client
        .batch_execute("ALTER TABLE t DROP COLUMN c; ALTER TABLE t ADD COLUMN c int;")
        .await
        .unwrap();
    for _ in 0..2 {
        let report = Migrator::new(&m).verify(db.pool()).await.unwrap();
        assert!(report.findings.is_empty(), "{report}");
    }
}

#[tokio::test]
async fn verify_works_with_a_read_only_role() {
    let db = database().await;
    let m = three();
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    let (role, pool) = login_role(
        &db,
        "reader",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
         ALTER ROLE {role} SET default_transaction_read_only = on;",
    )
    .await;
    let report = Migrator::new(&m).verify(&pool).await.unwrap();
    assert!(report.is_clean(), "{report}");
    drop(pool);
    drop_role(&db.connect().await.unwrap(), &role).await;
}

#[tokio::test]
async fn verify_works_on_a_hot_standby() {
    // A primary of its own (a base backup of the shared cluster would copy
    // every test's database), migrated, then a streaming replica of it.
    let primary = match tokio::task::spawn_blocking(dbprep_runtime::testing::Cluster::start)
        .await
        .unwrap()
    {
        Ok(primary) => primary,
        // Against a DATABASE_URL server without local PostgreSQL binaries
        // there is no replica to make.
        Err(dbprep_runtime::testing::ClusterError::BinariesNotFound)
            if std::env::var_os("DATABASE_URL").is_some() =>
        {
            return
        }
        Err(e) => panic!("{e}"),
    };
    let admin = dbprep_runtime::testing::pool(primary.config("postgres"), 1);
    admin
        .get()
        .await
        .unwrap()
        .batch_execute("CREATE DATABASE app")
        .await
        .unwrap();
    let m = three();
    let _ = Migrator::new(&m)
        .run(&dbprep_runtime::testing::pool(primary.config("app"), 1))
        .await
        .unwrap();
    let standby = tokio::task::spawn_blocking(move || {
        let standby = primary.start_standby();
        (primary, standby)
    })
    .await
    .unwrap();
    let (_primary, standby) = (standby.0, standby.1.unwrap_or_else(|e| panic!("{e}")));
    let pool = dbprep_runtime::testing::pool(standby.config("app"), 1);
    let client = pool.get().await.unwrap();
    let in_recovery = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap();
    assert!(in_recovery.get::<_, bool>(0), "the standby is in recovery");
    drop(client);
    let report = Migrator::new(&m).verify(&pool).await.unwrap();
    assert!(report.is_clean() && report.findings.is_empty(), "{report}");
    assert_eq!(report.version, Some(3));

    // Both servers in one connection string, the standby first, as an
    // operator lists a cluster's hosts: with `target_session_attrs=read-write`
    // the migrator goes to the primary, and `PGOPTIONS` reaches the session.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/app?target_session_attrs=read-write",
        standby.port(),
        _primary.port()
    );
    let config = dbprep_runtime::pg::connect::config::from_vars(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "PGOPTIONS" => Some("-c statement_timeout=4321".into()),
        _ => None,
    })
    .unwrap();
    let four = migrations(&[
        ("V1__users.sql", USERS),
        ("V2__audit.sql", AUDIT),
        ("V3__t.sql", "CREATE TABLE t (a int);"),
        ("V4__u.sql", "CREATE TABLE u (a int);"),
    ]);
    let hosts = dbprep_runtime::testing::pool(config, 1);
    let report = Migrator::new(&four).run(&hosts).await.unwrap();
    assert_eq!(report.version, Some(4), "{report}");
    let client = hosts.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "the migrator is on the primary");
    assert_eq!(row.get::<_, String>(1), "4321ms");
}

/// The stored snapshot is the schema's, whatever order its objects were
/// made (and its catalog rows are read) in.
#[tokio::test]
async fn the_same_schema_made_in_another_order_has_the_same_snapshot_hash() {
    let x = "CREATE TABLE x (id int PRIMARY KEY);";
    let y = "CREATE TABLE y (id int PRIMARY KEY, note text);\nCREATE INDEX y_note ON y (note);";
    let views = [
        "CREATE VIEW vx AS SELECT id FROM x;",
        "CREATE VIEW vy AS SELECT id FROM y;",
    ];
    let in_order = migrations(&[
        ("V1__x.sql", x),
        ("V2__y.sql", y),
        ("V3__views.sql", &views.join("\n")),
    ]);
    let other_order = migrations(&[
        ("V1__y.sql", y),
        ("V2__x.sql", x),
        ("V3__views.sql", &format!("{}\n{}", views[1], views[0])),
    ]);
    let mut hashes = Vec::new();
    for m in [&in_order, &other_order] {
        let db = database().await;
        let _ = Migrator::new(m).run(db.pool()).await.unwrap();
        let client = db.connect().await.unwrap();
        hashes.push(scalar(&client, STORED_OBJECTS).await.unwrap());
    }
    assert_eq!(hashes[0], hashes[1]);
}

/// A snapshot table of an earlier version (one row holding the whole
/// document): `verify` says it does not compare it, and the next run
/// replaces it with a snapshot taken whole.
#[tokio::test]
async fn a_snapshot_table_of_an_earlier_layout_is_replaced_by_the_next_run() {
    let db = database().await;
    let client = db.connect().await.unwrap();
    let m = three();
    let two = migrations(&[("V1__users.sql", USERS), ("V2__audit.sql", AUDIT)]);
    let _ = Migrator::new(&two).run(db.pool()).await.unwrap();
    client
        .batch_execute(
            "DROP TABLE public.dbprep_schema_snapshot;
            CREATE TABLE public.dbprep_schema_snapshot (
                only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                version      bigint,
                server_major integer NOT NULL,
                hash         text NOT NULL,
                fingerprint  text NOT NULL,
                snapshot     jsonb NOT NULL,
                taken_at     timestamptz NOT NULL DEFAULT clock_timestamp()
            );
            INSERT INTO public.dbprep_schema_snapshot (version, server_major, hash, fingerprint, snapshot)
            VALUES (2, 15, 'h', 'f', '{}');",
        )
        .await
        .unwrap();
    let report = Migrator::new(&two).verify(db.pool()).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(
        report.notes.iter().any(|n| n.contains("earlier version")),
        "{report}"
    );
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    assert!(stored_snapshot(&client).await.starts_with("3 true "));
    let report = Migrator::new(&m).verify(db.pool()).await.unwrap();
    assert!(report.is_clean() && report.notes.is_empty(), "{report}");
    assert_eq!(
        hand_made_column(&db, &Migrator::new(&m)).await,
        ["column public.t.by_hand added"]
    );
}

/// Runs after the first read again only the objects whose catalog rows
/// were written since the stored snapshot, and what depends on them: after
/// renames of a table, a column, an enum and its label, a trigger
/// function, a sequence used by a default and the schema itself, a table
/// made in a subtransaction and an index dropped, a data-only migration
/// and an index made outside a transaction, each in a run of its own, the
/// stored snapshot is the one a single run of every migration takes whole,
/// and `verify` is clean.
#[tokio::test]
async fn a_snapshot_refreshed_run_by_run_equals_one_taken_whole() {
    let files = [
        (
            "V1__app.sql",
            "CREATE SCHEMA app;
             CREATE TYPE app.mood AS ENUM ('a', 'b');
             CREATE SEQUENCE app.s;
             CREATE TABLE app.users (id int PRIMARY KEY, mood app.mood DEFAULT 'a', email text CHECK (email <> ''));
             CREATE INDEX users_email ON app.users (email);
             CREATE TABLE app.orders (id int DEFAULT nextval('app.s'), user_id int REFERENCES app.users (id));
             CREATE VIEW app.v AS SELECT id, email FROM app.users;
             CREATE FUNCTION app.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER t BEFORE INSERT ON app.users FOR EACH ROW EXECUTE FUNCTION app.f();",
        ),
        (
            "V2__renames.sql",
            "ALTER TABLE app.users RENAME TO people;
             ALTER TABLE app.people RENAME COLUMN email TO mail;
             ALTER TYPE app.mood RENAME TO feeling;
             ALTER TYPE app.feeling RENAME VALUE 'a' TO 'aa';
             ALTER FUNCTION app.f() RENAME TO g;
             ALTER SEQUENCE app.s RENAME TO s2;",
        ),
        (
            "V3__block.sql",
            "DO $$ BEGIN CREATE TABLE app.made_in_block (x int); EXCEPTION WHEN duplicate_table THEN NULL; END $$;
             DROP INDEX app.users_email;",
        ),
        ("V4__schema.sql", "ALTER SCHEMA app RENAME TO shop;"),
        ("V5__rows.sql", "INSERT INTO shop.people (id) VALUES (1);"),
        (
            "V6__index.sql",
            "-- dbprep:no-transaction\nCREATE INDEX CONCURRENTLY people_mail ON shop.people (mail);",
        ),
    ];
    let all = migrations(&files);
    let whole = database().await;
    let _ = Migrator::new(&all).run(whole.pool()).await.unwrap();
    let expected = scalar(&whole.connect().await.unwrap(), STORED_OBJECTS)
        .await
        .unwrap();

    let db = database().await;
    let client = db.connect().await.unwrap();
    for version in 1..=6 {
        let _ = Migrator::new(&all)
            .target(version)
            .run(db.pool())
            .await
            .unwrap();
        let report = Migrator::new(&all).verify(db.pool()).await.unwrap();
        assert!(report.findings.is_empty(), "after {version}: {report}");
    }
    assert_eq!(scalar(&client, STORED_OBJECTS).await.unwrap(), expected);
    assert!(stored_snapshot(&client).await.starts_with("6 true "));

    // And what changes by hand after them is itemized against it.
    client
        .batch_execute(
            "ALTER TABLE shop.people RENAME COLUMN mail TO email;
             ALTER TYPE shop.feeling RENAME TO mood;
             DROP VIEW shop.v;",
        )
        .await
        .unwrap();
    let report = Migrator::new(&all).verify(db.pool()).await.unwrap();
    let [Drift::Schema { changes }] = &report.errors().collect::<Vec<_>>()[..] else {
        panic!("{report}")
    };
    assert_eq!(
        changes,
        &[
            "column shop.people.mail dropped",
            "column shop.people.email added",
            "column shop.people.mood changed: type shop.feeling → shop.mood, default 'aa'::shop.feeling → 'aa'::shop.mood",
            "view shop.v dropped",
            "index shop.people_mail changed: CREATE INDEX people_mail ON shop.people USING btree (mail) → CREATE INDEX people_mail ON shop.people USING btree (email)",
            "constraint shop.people.users_email_check changed: CHECK ((mail <> ''::text)) → CHECK ((email <> ''::text))",
            "enum shop.feeling dropped",
            "enum shop.mood added",
        ],
        "{report}"
    );
}

/// A snapshot taken whole reads only the sections the schema has objects
/// in: objects of the others, made by hand afterwards, are itemized as
/// added like any other change.
#[tokio::test]
async fn a_whole_snapshot_of_tables_alone_still_sees_every_kind_made_later() {
    let db = database().await;
    let m = migrations(&[("V1__users.sql", USERS)]);
    let _ = Migrator::new(&m).run(db.pool()).await.unwrap();
    let client = db.connect().await.unwrap();
    let sections = "SELECT string_agg(DISTINCT section, ' ' ORDER BY section) \
                    FROM public.dbprep_schema_snapshot WHERE section <> ''";
    assert_eq!(
        scalar(&client, sections).await.unwrap(),
        "constraints indexes tables"
    );
    let changes = changes_after(
        &db,
        &Migrator::new(&m),
        "CREATE VIEW v AS SELECT id FROM users;
         CREATE SEQUENCE s;
         CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER tr BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION f();
         CREATE TYPE mood AS ENUM ('a');
         CREATE DOMAIN positive AS int CHECK (VALUE > 0);",
    )
    .await;
    assert_eq!(
        changes,
        [
            "view public.v added",
            "sequence public.s added",
            "trigger public.users.tr added",
            "function public.f() added",
            "enum public.mood added",
            "domain public.positive added",
        ]
    );
}
