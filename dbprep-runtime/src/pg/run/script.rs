//! Offline SQL: what `upgrade` would run, as one `psql` script a DBA reads
//! and runs (`psql -v ON_ERROR_STOP=1 -f FILE`), history rows included.
//!
//! The script does what a run does, in the order a run does it:
//!
//! 1. takes the migration lock (the session advisory lock; when another
//!    migrator holds it the script stops at once rather than wait, since a
//!    session blocked on the lock would hold up that migrator's
//!    `CREATE INDEX CONCURRENTLY`);
//! 2. creates dbprep's tables on a fresh database, and checks that the
//!    database is where the script starts from: an empty history, or one
//!    whose digest is that of the embedded set at `from` (an edited,
//!    unknown or unfinished version fails the check, as `upgrade` refuses
//!    it);
//! 3. applies each migration in a transaction of its own with its history
//!    row; a `-- dbprep:no-transaction` migration outside one, its row
//!    written unfinished first and marked done at its end, so that a
//!    failure leaves it dirty exactly as a run would;
//! 4. stores the schema snapshot, and releases the lock.
//!
//! The digest trigger keeps the digest row by row (a run defers it to its
//! end), so the database is left as a run leaves it: `verify` finds
//! nothing, and the next start-up is its one statement.

use crate::model::migration::{Migration, Migrations};
use crate::pg::error::{Error, Result};
use crate::pg::report::show;
use crate::pg::run::migrator::Migrator;
use crate::pg::run::plan::{Plan, Policies};
use crate::pg::sql::{bytea, literal};
use crate::pg::store::digest::{up_to_date_digests, HistoryDigest};
use crate::pg::store::history::NewRow;
use crate::pg::store::HistoryTable;

impl Migrations {
    /// The SQL script that brings a database from version `from` (`None`:
    /// a fresh database) to `to` (`None`: the newest), with the default
    /// history table. See [`Migrator::script`].
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTarget`] when `to` is not an embedded version,
    /// [`Error::Config`] when `from` is not one or not below `to`.
    pub fn script(&self, from: Option<i64>, to: Option<i64>) -> Result<String> {
        let mut migrator = Migrator::new(self);
        migrator.target = to;
        migrator.script(from)
    }
}

impl Migrator<'_> {
    /// What [`run`](Self::run) would apply to a database at version `from`
    /// (`None`: a fresh database), up to the target, as a `psql` script:
    /// the migration lock, dbprep's tables, a check that the database is at
    /// `from`, each migration atomic with its history row (no-transaction
    /// files outside a transaction), the schema snapshot. Run it with `psql
    /// -v ON_ERROR_STOP=1 -f FILE`: a migration that fails stops it, with
    /// what committed before it recorded, as a run leaves it.
    ///
    /// The script takes the session advisory lock, which migrators in
    /// [`LockMode::Transaction`](crate::LockMode::Transaction) do not look
    /// at: run it when no such migrator runs.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTarget`] when the target is not an embedded
    /// version, [`Error::Config`] when `from` is not one or not below the
    /// target.
    pub fn script(&self, from: Option<i64>) -> Result<String> {
        self.check_target()?;
        if let Some(from) = from {
            if self.find(from).is_none() {
                return Err(Error::config(format!(
                    "the script would start at version {from}, which is not one of the embedded migrations"
                )));
            }
        }
        let to = self.target.or(self.migrations.head());
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                return Err(Error::config(format!(
                    "the script would start at version {from} and end at {to}: nothing to apply"
                )));
            }
        }
        let pending: Vec<&Migration> = match from {
            None => Plan::new(self.migrations, &[], self.target, Policies::default())?.pending,
            Some(from) => self
                .migrations
                .iter()
                .filter(|m| m.version() > from && m.within(self.target))
                .collect(),
        };
        let script = Script {
            history: &self.history,
            lock_key: self.history.lock_key(),
            run_id: format!("script {}..{}", show(from), show(to)),
        };
        let mut sql = script.header(from, to);
        match from {
            None => sql.push_str(&script.fresh()),
            Some(from) => sql.push_str(
                &script.starting_at(from, &up_to_date_digests(self.migrations, Some(from))),
            ),
        }
        let mut previous = from;
        for m in pending {
            sql.push_str(&script.migration(m, previous));
            previous = Some(m.version());
        }
        if self.runs_repeatables() {
            sql.push_str(&script.repeatables(self.migrations.repeatables()));
        }
        sql.push_str(&script.footer(self.schema_snapshot));
        Ok(sql)
    }
}

/// After a file's SQL: the session as the script had it (a migration's
/// `SET ROLE` must not write dbprep's rows).
const BACK: &str = "RESET ALL;\nRESET SESSION AUTHORIZATION;\nRESET ROLE;\n";

/// What every part of one script shares.
struct Script<'a> {
    history: &'a HistoryTable,
    lock_key: i64,
    /// The `run_id` of the rows the script writes: which versions it spans.
    run_id: String,
}

impl Script<'_> {
    /// How to run it, what it does, and the lock.
    fn header(&self, from: Option<i64>, to: Option<i64>) -> String {
        let span = match from {
            None => "a fresh database".to_owned(),
            Some(v) => format!("a database at version {v}"),
        };
        format!(
            "-- dbprep {version}: the migrations that bring {span} to version {to},\n\
             -- recorded in {history}.\n\
             -- Run it with: psql -v ON_ERROR_STOP=1 -f FILE\n\
             -- Each migration commits with its history row; one that fails stops the\n\
             -- script, and what committed before it stays applied and recorded.\n\
             \\set ON_ERROR_STOP on\n\
             SET client_min_messages = warning;\n\
             SET application_name = {name};\n\n\
             -- The migration lock: another migrator at work stops the script here.\n\
             DO $dbprep$ BEGIN\n\
             IF NOT pg_catalog.pg_try_advisory_lock({key}) THEN\n\
             RAISE EXCEPTION 'dbprep: another migrator holds the migration lock of %; run the script again once it is done', {table};\n\
             END IF;\nEND $dbprep$;\n",
            version = env!("CARGO_PKG_VERSION"),
            to = show(to),
            history = self.history.qualified(),
            name = literal(&format!("dbprep {}", self.run_id)),
            key = self.lock_key,
            table = literal(&self.history.qualified()),
        )
    }

    /// dbprep's tables, created on a fresh database, whose history must be
    /// empty.
    fn fresh(&self) -> String {
        let history = self.history;
        // `CREATE SCHEMA IF NOT EXISTS` asks for the right to create schemas
        // even when the schema is there: not for `public`.
        let create_schema = history.schema != "public";
        format!(
            "\n-- dbprep's tables, and a check that the database is fresh.\nBEGIN;\n{}\n{}\n{}\n\
             DO $dbprep$ BEGIN\n\
             IF EXISTS (SELECT FROM {t}) THEN\n\
             RAISE EXCEPTION 'dbprep: this script installs the schema on a fresh database, but % already records versions', {table};\n\
             END IF;\nEND $dbprep$;\nCOMMIT;\n",
            history.create_sql(create_schema),
            history.create_digest_sql(HistoryDigest::default(), false),
            history.create_snapshot_sql(false),
            t = history.qualified(),
            table = literal(&history.qualified()),
        )
    }

    /// A check that the database is at `from`: its history's digest is one
    /// of `expected` (every version up to `from` applied, with the embedded
    /// checksums, none unfinished).
    fn starting_at(&self, from: i64, expected: &[HistoryDigest]) -> String {
        let t = self.history.qualified();
        let digests: Vec<String> = expected
            .iter()
            .map(|d| format!("({}, {})", d.rows, d.hash))
            .collect();
        format!(
            "\n-- A check that the database is at version {from}, as these migrations leave it.\n\
             DO $dbprep$ DECLARE head bigint; BEGIN\n\
             IF pg_catalog.to_regclass({table}) IS NULL OR pg_catalog.to_regclass({digest}) IS NULL THEN\n\
             RAISE EXCEPTION 'dbprep: this script goes on from version %, but the database has no history table %', {from}, {table};\n\
             END IF;\n\
             SELECT max(version) INTO head FROM {t} WHERE success;\n\
             IF head IS DISTINCT FROM {from} OR EXISTS (SELECT FROM {t} WHERE NOT success) THEN\n\
             RAISE EXCEPTION 'dbprep: this script goes on from version %, but the database is at version % (see dbprep status)', {from}, coalesce(head::text, 'none');\n\
             END IF;\n\
             IF NOT EXISTS (SELECT FROM {d} WHERE (rows, hash) IN ({digests})) THEN\n\
             RAISE EXCEPTION 'dbprep: the history of % differs from these migrations up to version % (an edited, unknown or unfinished version; see dbprep status)', {table}, {from};\n\
             END IF;\nEND $dbprep$;\n",
            table = literal(&t),
            digest = literal(&self.history.digest_table()),
            d = self.history.digest_table(),
            digests = digests.join(", "),
        )
    }

    /// One migration with its history row.
    fn migration(&self, m: &Migration, previous: Option<i64>) -> String {
        let t = self.history.qualified();
        let row = |success: bool| {
            self.history.insert_sql(&NewRow {
                installed_rank: format!("(SELECT COALESCE(max(installed_rank), 0) + 1 FROM {t})"),
                applied_at: if m.no_transaction() {
                    "pg_catalog.clock_timestamp()".into()
                } else {
                    "pg_catalog.now()".into()
                },
                applied_by: "CAST(CURRENT_USER AS pg_catalog.text)".into(),
                success,
                previous_version: previous.map_or("NULL".to_owned(), |v| v.to_string()),
                ..NewRow::of(m, 0, "", literal(&self.run_id))
            })
        };
        let version = m.version();
        let mut sql = format!("\n-- {}\n", m.file());
        if m.no_transaction() {
            // Outside a transaction: each statement commits on its own. The
            // start time waits in a psql variable, which no `RESET ALL` of
            // the migration's clears.
            sql.push_str(&row(false));
            sql.push_str(&format!(
                "SELECT pg_catalog.clock_timestamp() AS dbprep_started \\gset\n{}\n;\n{BACK}\
                 UPDATE {t} SET success = true, execution_ms = \
                 (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - :'dbprep_started'::pg_catalog.timestamptz) * 1000)::pg_catalog.int4 \
                 WHERE version = {version};\n",
                m.sql(),
            ));
        } else {
            sql.push_str("BEGIN;\n");
            sql.push_str(&row(true));
            sql.push_str(m.sql());
            sql.push_str("\n;\n");
            sql.push_str(BACK);
            sql.push_str(&self.history.duration_so_far_sql(version));
            sql.push_str("COMMIT;\n");
        }
        sql
    }

    /// The repeatable migrations, each run (with its row, in one
    /// transaction) only when the database did not run this very file
    /// last: psql decides, from a `\gset` variable.
    fn repeatables(&self, repeatables: &[Migration]) -> String {
        let t = self.history.repeatable_table();
        let mut sql = format!(
            "\n-- The repeatable migrations, each run again only when its file changed.\n{}",
            self.history.create_repeatable_table_sql()
        );
        for m in repeatables {
            sql.push_str(&format!(
                "\n-- {file}\n\
                 SELECT NOT EXISTS (SELECT FROM {t} WHERE name = {name} AND checksum = {checksum}) AS dbprep_due \\gset\n\
                 \\if :dbprep_due\nBEGIN;\n{row}{body}\n;\n{BACK}\
                 UPDATE {t} SET execution_ms = (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - pg_catalog.now()) * 1000)::pg_catalog.int4 \
                 WHERE name = {name};\nCOMMIT;\n\\endif\n",
                file = m.file(),
                name = literal(m.name()),
                checksum = bytea(m.checksum().as_bytes()),
                row = self.history.record_repeatable_sql(
                    m,
                    "CAST(CURRENT_USER AS pg_catalog.text)",
                    &literal(&self.run_id)
                ),
                body = m.sql(),
            ));
        }
        sql
    }

    /// The schema snapshot, and the lock released.
    fn footer(&self, itemize: bool) -> String {
        format!(
            "\n-- The schema snapshot that `verify` compares with, and the lock released.\nBEGIN;\n{}COMMIT;\nSELECT pg_catalog.pg_advisory_unlock({});\n",
            self.history
                .store_snapshot_sql(itemize),
            self.lock_key,
        )
    }
}
