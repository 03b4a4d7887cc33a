//! Baselines written for you: `B<V>__baseline.sql` from the schema the
//! migrations up to `V` make, dumped by `pg_dump --schema-only`.
//!
//! The schema comes from a scratch database the migrations are run on (not
//! from a production database, whose hand-made changes would slip in),
//! with dbprep's own tables in a schema of their own that the dump leaves
//! out. The dump is made a migration: `psql`'s `\restrict` lines (which
//! newer `pg_dump`s write) are dropped, and the result goes through every
//! check `embed_migrations!` makes, so a baseline that is written is one
//! that embeds.

use std::process::{Command, Stdio};

use tokio_postgres::{Config, NoTls};

use super::scratch::Scratch;
use crate::model::check::check_sql;
use crate::pg::connect::{pool_with, PoolTls};
use crate::pg::error::{Error, Result};
use crate::pg::run::migrator::Migrator;
use crate::pg::tools;

/// The schema of dbprep's tables in the scratch database: left out of the
/// dump.
const SCRATCH_HISTORY_SCHEMA: &str = "dbprep_squash";

/// A baseline: the file to add beside the migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// The version it stands for.
    pub version: i64,
    /// Its file name, `B<version>__baseline.sql`.
    pub file_name: String,
    /// Its SQL.
    pub sql: String,
}

impl Migrator<'_> {
    /// The baseline of the migrations up to the target (default: the
    /// newest): a scratch database is created on the server of `server`
    /// (its role needs `CREATEDB`), migrated, dumped with `pg_dump
    /// --schema-only --no-owner`, and dropped. Added beside the
    /// migrations, the file makes a fresh database start at the target in
    /// one step; databases already past it never run it.
    ///
    /// # Errors
    ///
    /// No `pg_dump` on this machine, a migration that fails, a dump that
    /// fails or that dbprep's checks refuse (each says which).
    pub async fn squash(&self, server: &Config) -> Result<Baseline> {
        self.squash_with(server, NoTls).await
    }

    /// [`squash`](Self::squash) through a TLS connector (`pg_dump` follows
    /// `PGSSLMODE` and the other libpq variables of this process).
    ///
    /// # Errors
    ///
    /// As [`squash`](Self::squash).
    pub async fn squash_with<T: PoolTls>(&self, server: &Config, tls: T) -> Result<Baseline> {
        self.check_target()?;
        let version = self
            .target
            .or(self.migrations.head())
            .ok_or_else(|| Error::config("there is no migration to squash"))?;
        let pg_dump = tools::find("pg_dump").ok_or_else(|| {
            Error::config(
                "pg_dump not found (on PATH or in /usr/lib/postgresql/*/bin): install PostgreSQL's client programs (Debian: apt-get install postgresql-client)",
            )
        })?;
        let scratch = Scratch::create(server, tls.clone(), "squash").await?;
        let dumped = async {
            let pool = pool_with(scratch.config.clone(), tls, 1);
            let mut migrator = self.clone().history_schema(SCRATCH_HISTORY_SCHEMA);
            migrator.target = Some(version);
            migrator.check_schema = false;
            let run = migrator.run(&pool).await;
            pool.close();
            tracing::info!("migrated the scratch database {}: {}", scratch.name, run?);
            dump(&pg_dump, &scratch.config)
        }
        .await;
        scratch.drop().await;
        let sql = as_migration(&dumped?, version);
        let file_name = format!("B{version}__baseline.sql");
        if let Some(problem) = check_sql(&sql, false).first() {
            return Err(Error::config(format!(
                "the dump of version {version} is not a valid migration: line {}: {}",
                problem.line,
                problem.message()
            )));
        }
        Ok(Baseline {
            version,
            file_name,
            sql,
        })
    }
}

/// `pg_dump --schema-only` of the database of `config`, without dbprep's
/// schema or owners.
fn dump(pg_dump: &std::path::Path, config: &Config) -> Result<String> {
    let mut command = Command::new(pg_dump);
    command
        .args([
            "--schema-only",
            "--no-owner",
            "--no-comments",
            "--exclude-schema",
            SCRATCH_HISTORY_SCHEMA,
        ])
        .stdin(Stdio::null());
    if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
        command.env("PGHOST", host);
    }
    if let Some(tokio_postgres::config::Host::Unix(dir)) = config.get_hosts().first() {
        command.env("PGHOST", dir);
    }
    if let Some(port) = config.get_ports().first() {
        command.env("PGPORT", port.to_string());
    }
    if let Some(user) = config.get_user() {
        command.env("PGUSER", user);
    }
    command.env("PGDATABASE", config.get_dbname().unwrap_or_default());
    // In the child's environment, which only this user can read: never an
    // argument, which any user sees in the process list.
    match config.get_password() {
        Some(password) => command.env("PGPASSWORD", String::from_utf8_lossy(password).as_ref()),
        None => command.env_remove("PGPASSWORD"),
    };
    let output = command
        .output()
        .map_err(|e| Error::config_caused(format!("cannot run {}: {e}", pg_dump.display()), e))?;
    if !output.status.success() {
        return Err(Error::config(format!(
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Error::config("pg_dump wrote text that is not UTF-8"))
}

/// The dump as a baseline file: a header, and without `psql`'s
/// `\restrict`/`\unrestrict` lines (they guard a restore by `psql`; a
/// migration does not go through `psql`).
fn as_migration(dump: &str, version: i64) -> String {
    let mut sql = format!(
        "-- Baseline: the schema of migrations up to version {version}, written by `dbprep squash`\n\
         -- from pg_dump --schema-only. A fresh database runs this file instead of those\n\
         -- migrations; a database already past version {version} never runs it.\n"
    );
    for line in dump.lines() {
        if line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ") {
            continue;
        }
        sql.push_str(line);
        sql.push('\n');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_lines_are_dropped_and_a_header_added() {
        let sql = as_migration(
            "\\restrict abc\nCREATE TABLE t (id int);\n\\unrestrict abc\n",
            7,
        );
        assert!(sql.starts_with("-- Baseline: the schema of migrations up to version 7"));
        assert!(sql.ends_with("CREATE TABLE t (id int);\n"), "{sql}");
        assert!(!sql.contains("restrict"), "{sql}");
    }
}
