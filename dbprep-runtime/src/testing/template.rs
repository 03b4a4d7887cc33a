//! Migrated test databases, cloned from a template: the migrations and
//! fixtures run once per distinct set on a server, and each test gets
//! `CREATE DATABASE … TEMPLATE …` of the result instead of running them
//! again.
//!
//! The template's name comes from the set's checksums (and the fixtures'),
//! so an edited migration makes a new template and an unchanged one is
//! reused by every test binary and every run. Test binaries run in
//! parallel: a template is built under an advisory lock, in a database of
//! another name, and only renamed to its own name (and marked a template,
//! closed to connections) once complete, so a half-built one is never
//! cloned.

use sha2::{Digest, Sha256};

use super::database::{connect, TestDatabase, TestServer, TestingError};
use super::spares;
use crate::model::fixture::Fixture;
use crate::model::migration::Migrations;
use crate::pg::sql::{ident, literal};
use crate::Migrator;

/// The prefix of every template's name.
const PREFIX: &str = "dbprep_template_";

/// A database with `migrations` applied and `fixtures` loaded, cloned from
/// the set's template (built on first use).
///
/// # Example
///
/// ```no_run
/// use dbprep_runtime::{Fixtures, Migrations};
/// # static MIGRATIONS: Migrations = Migrations::empty();
/// # static FIXTURES: Fixtures = Fixtures::__embedded(&[]);
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let keypairs = FIXTURES.get("example-keypairs").expect("a fixture");
/// let db = dbprep_runtime::testing::migrated(&MIGRATIONS, &[keypairs]).await?;
/// let client = db.pool().get().await?;
/// client.simple_query("SELECT * FROM keypairs").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`TestingError`] when no server can be had, or the migrations or
/// fixtures fail (the template is not kept then).
pub async fn migrated(
    migrations: &Migrations,
    fixtures: &[&Fixture],
) -> Result<TestDatabase, TestingError> {
    let server = TestServer::get()?;
    let template = template_name(migrations, fixtures);
    let hash = &template[PREFIX.len()..];
    let admin_config = server.admin_config();
    let name = TestDatabase::new_name();
    if spares::claim(&admin_config, hash, &name).await? {
        spares::refill(&admin_config, &template, hash);
        return Ok(TestDatabase::existing(server, name));
    }
    let admin = connect(&admin_config, "connect to the test server").await?;
    if !is_ready(&admin, &template).await? {
        build(&server, &admin, &template, migrations, fixtures).await?;
    }
    let db = TestDatabase::from_template(server, &admin, &template).await?;
    spares::refill(&admin_config, &template, hash);
    Ok(db)
}

/// The name of the template [`migrated`] clones for this set:
/// `dbprep_template_` and 16 hex digits of a hash of every migration's
/// version and checksum, every fixture's name and checksum, and the
/// version of dbprep (whose own tables are in the template).
pub fn template_name(migrations: &Migrations, fixtures: &[&Fixture]) -> String {
    let mut hash = Sha256::new();
    hash.update(env!("CARGO_PKG_VERSION"));
    for m in migrations.iter().chain(migrations.baselines()) {
        hash.update(format!("\n{} {}", m.version(), m.checksum()));
    }
    for m in migrations.repeatables() {
        hash.update(format!("\nrepeatable {} {}", m.name(), m.checksum()));
    }
    for f in fixtures {
        hash.update(format!("\nfixture {} {}", f.name(), f.checksum()));
    }
    let digest = hash.finalize();
    format!("{PREFIX}{}", crate::pg::sql::hex(&digest[..8]))
}

/// Whether `template` exists complete (it is marked a template only then).
async fn is_ready(admin: &tokio_postgres::Client, template: &str) -> Result<bool, TestingError> {
    let row = admin
        .query_opt(
            "SELECT datistemplate FROM pg_catalog.pg_database WHERE datname = $1",
            &[&template],
        )
        .await
        .map_err(|source| TestingError::Postgres {
            what: format!("look up the template {template}"),
            source,
        })?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// Build `template` unless a peer did while this one waited for the lock.
async fn build(
    server: &TestServer,
    admin: &tokio_postgres::Client,
    template: &str,
    migrations: &Migrations,
    fixtures: &[&Fixture],
) -> Result<(), TestingError> {
    let run = |sql: String, what: String| async move {
        admin
            .batch_execute(&sql)
            .await
            .map_err(|source| TestingError::Postgres { what, source })
    };
    // The lock key: the template name's hash digits, as a bigint. The
    // lock belongs to this admin session and goes with it if the process
    // dies mid-build.
    let key = u64::from_str_radix(&template[PREFIX.len()..], 16).unwrap_or_default() as i64;
    run(
        format!("SELECT pg_catalog.pg_advisory_lock({key})"),
        format!("wait for the lock of {template}"),
    )
    .await?;
    let built = async {
        if is_ready(admin, template).await? {
            return Ok(());
        }
        // A builder that died leaves its database under this name.
        let building = format!("{template}_building");
        run(
            format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
            format!("drop the unfinished {building}"),
        )
        .await?;
        run(
            format!("CREATE DATABASE \"{building}\""),
            format!("create {building}"),
        )
        .await?;
        let filled = async {
            let pool = super::pool(server.config(&building), 1);
            let migrator = Migrator::new(migrations);
            let failed = |what: &str, e: crate::Error| TestingError::Template {
                template: template.to_owned(),
                what: what.to_owned(),
                reason: e.to_string(),
            };
            let report = migrator.run(&pool).await.map_err(|e| failed("migrate", e))?;
            tracing::info!("built the test template {template}: {report}");
            for fixture in fixtures {
                let _ = migrator
                    .populate(&pool, fixture, None)
                    .await
                    .map_err(|e| failed(&format!("load fixture {}", fixture.name()), e))?;
            }
            pool.close();
            Ok(())
        }
        .await;
        if let Err(error) = filled {
            let _ = run(
                format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
                String::new(),
            )
            .await;
            return Err(error);
        }
        // Renaming needs the database to have no session: the pool's last
        // connection may still be closing.
        run(
            format!(
                "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE datname = '{building}'; \
                 ALTER DATABASE \"{building}\" RENAME TO \"{template}\"; \
                 ALTER DATABASE \"{template}\" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false; \
                 COMMENT ON DATABASE \"{template}\" IS {}",
                literal(&project_comment(migrations))
            ),
            format!("make {template} a template"),
        )
        .await?;
        drop_older_templates(admin, template, migrations).await;
        Ok(())
    }
    .await;
    let _ = run(
        format!("SELECT pg_catalog.pg_advisory_unlock({key})"),
        String::new(),
    )
    .await;
    built
}

/// The comment on every template of the project `migrations` belong to:
/// a hash of its first migration (version and checksum), which a project
/// rarely edits, so that a new template of the project replaces its older
/// ones.
fn project_comment(migrations: &Migrations) -> String {
    let first = migrations.iter().next().or(migrations.baselines().first());
    let mut hash = Sha256::new();
    if let Some(m) = first {
        hash.update(format!("{} {}", m.version(), m.checksum()));
    }
    let digest = hash.finalize();
    format!(
        "dbprep test template of project {}",
        crate::pg::sql::hex(&digest[..8])
    )
}

/// Drop the other templates of the project of `migrations` (an edited
/// migration made them stale), then every spare whose template is gone. A
/// template another test process is cloning at this moment waits for it;
/// one that cannot be dropped is left, with a warning.
async fn drop_older_templates(
    admin: &tokio_postgres::Client,
    template: &str,
    migrations: &Migrations,
) {
    let older = names(
        admin,
        "SELECT d.datname::text FROM pg_catalog.pg_database d \
         JOIN pg_catalog.pg_shdescription s ON s.objoid = d.oid AND s.classoid = 'pg_catalog.pg_database'::pg_catalog.regclass \
         WHERE s.description = $1 AND d.datname <> $2 AND pg_catalog.starts_with(d.datname, $3)",
        &[&project_comment(migrations), &template, &PREFIX],
    )
    .await;
    for old in older {
        // One statement at a time: `DROP DATABASE` refuses to run in a
        // string of several.
        let old_ident = ident(&old);
        let dropped = async {
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {old_ident} WITH IS_TEMPLATE false"
                ))
                .await?;
            admin
                .batch_execute(&format!("DROP DATABASE {old_ident}"))
                .await
        };
        match dropped.await {
            Ok(()) => tracing::info!("dropped the older test template {old}"),
            Err(e) => tracing::warn!("cannot drop the older test template {old}: {e}"),
        }
    }
    let orphans = names(
        admin,
        "SELECT s.datname::text FROM pg_catalog.pg_database s \
         WHERE pg_catalog.starts_with(s.datname, $1) AND NOT EXISTS (\
         SELECT FROM pg_catalog.pg_database t WHERE t.datname = $2 || pg_catalog.substr(s.datname, pg_catalog.length($1) + 1, 16))",
        &[&spares::PREFIX, &PREFIX],
    )
    .await;
    for spare in orphans {
        if let Err(e) = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", ident(&spare)))
            .await
        {
            tracing::warn!("cannot drop the spare {spare} of a dropped template: {e}");
        }
    }
}

/// The names a query of the catalog returns; none, with a warning, when
/// it fails.
async fn names(
    admin: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<String> {
    match admin.query(sql, params).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) => {
            tracing::warn!("cannot look for older test templates: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(sql: &str) -> Migrations {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V1__a.sql"), sql).unwrap();
        Migrations::from_dir(dir.path()).unwrap()
    }

    #[test]
    fn an_edited_migration_makes_another_template() {
        let a = template_name(&set("CREATE TABLE a (id int);"), &[]);
        let same = template_name(&set("CREATE TABLE a (id int);"), &[]);
        let edited = template_name(&set("CREATE TABLE a (id bigint);"), &[]);
        assert_eq!(a, same);
        assert_ne!(a, edited);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 16, "{a}");
    }
}
