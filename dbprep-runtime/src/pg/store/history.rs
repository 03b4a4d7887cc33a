//! The history table, `dbprep_schema_history`: its SQL, and reading it.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use tokio_postgres::error::SqlState;

use crate::model::checksum::history_row_hash;
pub use crate::model::history::HistoryRow;
use crate::model::history::RowKind;
use crate::model::migration::{Migration, Migrations};
use crate::pg::error::{is_sqlstate, Error, Result};
use crate::pg::sql::{column, ident, literal, rows};

/// Where the history lives: a schema and a table name, always written
/// schema-qualified (a migration's `SET search_path` must not redirect it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTable {
    /// The schema (default `public`).
    pub schema: String,
    /// The table (default `dbprep_schema_history`).
    pub table: String,
}

impl Default for HistoryTable {
    fn default() -> Self {
        HistoryTable {
            schema: "public".into(),
            table: "dbprep_schema_history".into(),
        }
    }
}

impl HistoryTable {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.table))
    }

    /// The one-row table that summarizes the history: its row count and the
    /// XOR of a 64-bit hash of each row, kept by a trigger on every change
    /// (by dbprep or by hand). A start-up reads this row instead of the
    /// history: one short answer, however many migrations were applied.
    pub fn digest_table(&self) -> String {
        format!(
            "{}.{}",
            ident(&self.schema),
            ident(&format!("{}_digest", self.table))
        )
    }

    /// The one-row table of the migration lock's lease, in
    /// [`LockMode::Transaction`](crate::pg::run::lock::LockMode::Transaction):
    /// which run holds it, and until when.
    pub fn lease_table(&self) -> String {
        format!(
            "{}.{}",
            ident(&self.schema),
            ident(&format!("{}_lock", self.table))
        )
    }

    fn digest_function(&self) -> String {
        format!(
            "{}.{}",
            ident(&self.schema),
            ident(&format!("{}_digest_update", self.table))
        )
    }

    /// The statement that creates the table if missing, and with
    /// `create_schema` its schema. (`CREATE SCHEMA IF NOT EXISTS` asks for
    /// the right to create schemas in the database even when the schema is
    /// there: an owner granted no more than a schema could not run.)
    ///
    /// `previous_version` is the migration applied before it in the same
    /// batch, and `run_id` names the run that wrote the row: the history
    /// insert of a batch leaves it `NULL`, which the table refuses, when
    /// the predecessor was not committed (the batch guard).
    ///
    /// Half of each page is left free: a batch writes its durations into
    /// rows it has just inserted, and with room on their page the new
    /// versions stay there and the primary key is not touched (3.5 instead
    /// of 7 ms for 1,000 rows).
    pub fn create_sql(&self, create_schema: bool) -> String {
        let t = self.qualified();
        let pkey = ident(&format!("{}_pkey", self.table));
        format!(
            "{schema}CREATE TABLE IF NOT EXISTS {t} (
    installed_rank   integer NOT NULL,
    version          bigint NOT NULL CONSTRAINT {pkey} PRIMARY KEY,
    name             text NOT NULL,
    checksum         bytea,
    kind             text NOT NULL CHECK (kind IN ('migration', 'baseline', 'stamp')),
    applied_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    execution_ms     integer NOT NULL DEFAULT 0,
    applied_by       text NOT NULL,
    success          boolean NOT NULL,
    previous_version bigint,
    run_id           text NOT NULL
) WITH (fillfactor = 50);",
            schema = self.create_schema_sql(create_schema),
        )
    }

    /// The statement that (re)creates the digest table, its trigger, and
    /// sets the digest to `digest` (of the rows the history holds now).
    ///
    /// The trigger keeps the digest for every change, except the history
    /// inserts of a migration batch: they run with [`DIGEST_DEFERRED`] set,
    /// and the run writes the digest once, from the rows, when it ends
    /// ([`HistoryTable::finish_run_sql`]); no PL/pgSQL call, SHA-256 or
    /// digest update per migration.
    pub(crate) fn create_digest_sql(&self, digest: HistoryDigest) -> String {
        let t = self.qualified();
        let d = self.digest_table();
        let f = self.digest_function();
        let trigger = ident(&format!("{}_digest", self.table));
        let truncate_trigger = ident(&format!("{}_digest_truncate", self.table));
        let hash = |r: &str| {
            format!("('x' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({r}.version::text || ':' || coalesce(pg_catalog.encode({r}.checksum, 'hex'), '') || ':' || {r}.success::text, 'UTF8')), 'hex'), 16))::bit(64)::bigint")
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {d} (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    rows     bigint NOT NULL,
    hash     bigint NOT NULL
);
CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS $dbprep$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE {d} SET rows = 0, hash = 0;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE {d} SET rows = rows - 1, hash = hash # {old};
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        UPDATE {d} SET rows = rows + 1, hash = hash # {new};
    END IF;
    RETURN NULL;
END
$dbprep$;
DROP TRIGGER IF EXISTS {trigger} ON {t};
CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW
    WHEN (pg_catalog.current_setting('{DIGEST_DEFERRED}', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION {f}();
DROP TRIGGER IF EXISTS {truncate_trigger} ON {t};
CREATE TRIGGER {truncate_trigger} AFTER TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {f}();
INSERT INTO {d} (only_row, rows, hash) VALUES (true, {rows}, {h})
    ON CONFLICT (only_row) DO UPDATE SET rows = EXCLUDED.rows, hash = EXCLUDED.hash;",
            old = hash("OLD"),
            new = hash("NEW"),
            rows = digest.rows,
            h = digest.hash,
        )
    }

    /// The one statement of a start-up: the history's digest.
    pub(crate) fn digest_sql(&self) -> String {
        format!("SELECT rows, hash FROM {}", self.digest_table())
    }

    /// Read every row, in version order.
    pub(crate) async fn read(&self, client: &Client) -> Result<Vec<HistoryRow>> {
        let sql = format!(
            "SELECT version, name, pg_catalog.encode(checksum, 'hex'), kind, success, installed_rank, applied_at, execution_ms, applied_by \
             FROM {} ORDER BY version",
            self.qualified()
        );
        let answer = client
            .simple_query(&sql)
            .await
            .map_err(Error::postgres("read the history table"))?;
        let table = self.qualified();
        rows(answer)
            .iter()
            .map(|row| row_from(&table, row))
            .collect()
    }

    /// `CREATE SCHEMA IF NOT EXISTS` of the table's schema, or nothing
    /// when `create` is false (the schema is known to exist).
    pub(crate) fn create_schema_sql(&self, create: bool) -> String {
        if create {
            format!("CREATE SCHEMA IF NOT EXISTS {};\n", ident(&self.schema))
        } else {
            String::new()
        }
    }

    /// Whether the table's schema exists.
    pub(crate) async fn schema_exists(&self, client: &Client) -> Result<bool> {
        let sql = format!(
            "SELECT pg_catalog.to_regnamespace({}) IS NOT NULL",
            literal(&ident(&self.schema))
        );
        query_bool(
            client,
            &sql,
            &format!("look for the schema {}", self.schema),
        )
        .await
    }

    /// Whether the table exists.
    pub(crate) async fn exists(&self, client: &Client) -> Result<bool> {
        relation_exists(client, &self.qualified()).await
    }

    /// The advisory-lock key of this table: the first 8 bytes of the SHA-256
    /// of its qualified name, so that two histories in one database do not
    /// block each other.
    pub fn lock_key(&self) -> i64 {
        let digest = Sha256::digest(format!("dbprep:{}", self.qualified()).as_bytes());
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// The setting under which the digest trigger leaves a history insert to
/// the run, which writes the digest when it ends (see
/// [`HistoryTable::create_digest_sql`]).
pub(crate) const DIGEST_DEFERRED: &str = "dbprep.digest_deferred";

/// The session facts a run needs, read once it has work to do.
const SESSION_FACTS: &str =
    "pg_catalog.current_setting('server_version_num'), pg_catalog.current_setting('role'), \
     pg_catalog.current_setting('search_path'), current_user, pg_catalog.current_setting('application_name'), session_user, \
     pg_catalog.now() = pg_catalog.statement_timestamp()";

/// A summary of the history: how many rows, and the XOR of a 64-bit hash of
/// each (version, checksum, success). XOR lets the trigger update it row by
/// row in either direction; the client computes the same from the embedded
/// set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HistoryDigest {
    pub rows: i64,
    pub hash: i64,
}

impl HistoryDigest {
    /// Add a row's hash.
    fn with(self, hash: i64) -> Self {
        HistoryDigest {
            rows: self.rows + 1,
            hash: self.hash ^ hash,
        }
    }

    /// The digest of history rows as read.
    pub(crate) fn of_rows(rows: &[HistoryRow]) -> Self {
        rows.iter().fold(HistoryDigest::default(), |d, r| {
            d.with(history_row_hash(
                r.version,
                r.checksum.as_deref().unwrap_or(""),
                r.success,
            ))
        })
    }
}

/// The digests of every up-to-date history `migrations` can leave at
/// `target`: everything applied one by one, or a baseline followed by the
/// migrations after it. Only XORs of hashes computed at compile time.
pub(crate) fn up_to_date_digests(
    migrations: &Migrations,
    target: Option<i64>,
) -> Vec<HistoryDigest> {
    let upto = |m: &&Migration| target.is_none_or(|t| m.version() <= t);
    let digest = |from: i64| {
        migrations
            .iter()
            .filter(upto)
            .filter(|m| m.version() > from)
            .fold(HistoryDigest::default(), |d, m| d.with(m.history_hash()))
    };
    let mut digests = vec![digest(i64::MIN)];
    for baseline in migrations.baselines().iter().filter(upto) {
        digests.push(digest(baseline.version()).with(baseline.history_hash()));
    }
    digests
}

/// Read one row as [`HistoryTable::read`] selects it. A value that does
/// not read as its column's type means the table was changed by hand:
/// nothing is decided on a guess.
fn row_from(table: &str, row: &tokio_postgres::SimpleQueryRow) -> Result<HistoryRow> {
    let text = |i| column(row, i).unwrap_or_default();
    let version_text = text(0);
    let damaged = |what: &str, value: &str| Error::DamagedHistory {
        table: table.to_owned(),
        detail: format!("version {version_text:?}: {what} {value:?}"),
    };
    let number = |i: usize, what: &str| -> Result<i64> {
        text(i).parse().map_err(|_| damaged(what, text(i)))
    };
    let kind = RowKind::parse(text(3))
        .ok_or_else(|| damaged("kind is not migration, baseline or stamp but", text(3)))?;
    Ok(HistoryRow {
        version: number(0, "the version is not a bigint:")?,
        name: text(1).to_owned(),
        checksum: column(row, 2).map(str::to_owned),
        kind,
        success: column(row, 4) == Some("t"),
        installed_rank: i32::try_from(number(5, "installed_rank is not an integer:")?)
            .map_err(|_| damaged("installed_rank is out of range:", text(5)))?,
        applied_at: text(6).to_owned(),
        execution_ms: i32::try_from(number(7, "execution_ms is not an integer:")?)
            .map_err(|_| damaged("execution_ms is out of range:", text(7)))?,
        applied_by: text(8).to_owned(),
    })
}

/// What a run that has work to do needs to know about its session, read
/// in one statement after the start-up found the history behind.
#[derive(Debug, Clone)]
pub(crate) struct SessionFacts {
    pub server_version_num: i32,
    pub role: String,
    pub search_path: String,
    pub user: String,
    pub application_name: String,
    pub session_user: String,
    /// Whether the session was outside a transaction block: a statement
    /// sent alone starts its own transaction then, at its own timestamp
    /// (inside a block begun earlier, `now()` is older).
    pub outside_transaction: bool,
}

/// The refusal of a run on a connection inside a transaction block.
pub(crate) fn inside_transaction_block() -> Error {
    Error::Config(
        "the connection is inside a transaction block: each migration commits on its own, \
         which would commit that transaction too; run on a connection outside one \
         (nothing was written)"
            .into(),
    )
}

/// Read the session facts, in one statement.
pub(crate) async fn session_facts(client: &Client) -> Result<SessionFacts> {
    let answer = client
        .simple_query(&format!("SELECT {SESSION_FACTS}"))
        .await
        .map_err(|e| {
            // A block that a failed statement (the start-up's, on a first
            // start) aborted: say why nothing can go on.
            if is_sqlstate(&e, &[SqlState::IN_FAILED_SQL_TRANSACTION]) {
                inside_transaction_block()
            } else {
                Error::postgres("read the session settings")(e)
            }
        })?;
    let rows = rows(answer);
    let row = rows
        .first()
        .ok_or_else(|| Error::Connect("the server returned no session settings".into()))?;
    let text = |i| column(row, i).unwrap_or_default().to_owned();
    Ok(SessionFacts {
        server_version_num: text(0).parse().unwrap_or_default(),
        role: text(1),
        search_path: text(2),
        user: text(3),
        application_name: text(4),
        session_user: text(5),
        outside_transaction: text(6) == "t",
    })
}

impl HistoryTable {
    /// The history's digest, in one statement: `None` when the digest table
    /// (SQLSTATE 42P01, or 3F000 for a missing schema), and so normally the
    /// history, does not exist yet — a database's first start — or was
    /// emptied by hand.
    pub(crate) async fn digest(&self, client: &Client) -> Result<Option<HistoryDigest>> {
        let answer = match client.simple_query(&self.digest_sql()).await {
            Ok(answer) => answer,
            Err(e)
                if is_sqlstate(
                    &e,
                    &[SqlState::UNDEFINED_TABLE, SqlState::INVALID_SCHEMA_NAME],
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::postgres("read the history digest")(e)),
        };
        Ok(rows(answer).first().map(|row| {
            let text = |i| column(row, i).unwrap_or_default();
            HistoryDigest {
                rows: text(0).parse().unwrap_or(-1),
                hash: text(1).parse().unwrap_or_default(),
            }
        }))
    }

    /// Whether the digest table exists with the trigger this version of
    /// dbprep expects: one whose `WHEN` leaves a batch's inserts to the run
    /// (an older one would count those rows twice).
    pub(crate) async fn digest_is_current(&self, client: &Client) -> Result<bool> {
        let sql = format!(
            "SELECT pg_catalog.to_regclass({d}) IS NOT NULL AND EXISTS (\
             SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({t}) \
             AND tgname = {trigger} AND tgqual IS NOT NULL)",
            d = literal(&self.digest_table()),
            t = literal(&self.qualified()),
            trigger = literal(&format!("{}_digest", self.table)),
        );
        query_bool(client, &sql, "look for the history digest").await
    }

    /// The statement a batch starts with: a digest that no history can
    /// have (`rows = -1`), so that a run killed half-way leaves one that
    /// every start-up sees as stale; the run writes the real one when it
    /// ends.
    pub(crate) fn digest_in_progress_sql(&self) -> String {
        format!("UPDATE {} SET rows = -1, hash = 0;\n", self.digest_table())
    }

    /// The end of a run, in one message: the digest of `rows` (the history
    /// as the run leaves it, read under the lock) written without waiting
    /// for the disk (lost in a crash, it is rebuilt by the next run), then
    /// the lock released with `unlock`.
    pub(crate) fn finish_run_sql(&self, rows: &[HistoryRow], unlock: &str) -> String {
        let digest = HistoryDigest::of_rows(rows);
        format!(
            "BEGIN;\nSET LOCAL synchronous_commit = off;\nSET LOCAL search_path = pg_catalog;\n\
             UPDATE {d} SET rows = {rows}, hash = {hash} WHERE rows IS DISTINCT FROM {rows} OR hash IS DISTINCT FROM {hash};\n\
             COMMIT;\n{unlock}",
            d = self.digest_table(),
            rows = digest.rows,
            hash = digest.hash,
        )
    }
}

/// Whether a (qualified, quoted) relation exists.
async fn relation_exists(client: &Client, relation: &str) -> Result<bool> {
    let sql = format!(
        "SELECT pg_catalog.to_regclass({}) IS NOT NULL",
        literal(relation)
    );
    query_bool(client, &sql, &format!("look for {relation}")).await
}

/// The boolean a one-value query answers; `doing` names the step in an
/// error.
async fn query_bool(client: &Client, sql: &str, doing: &str) -> Result<bool> {
    let answer = client
        .simple_query(sql)
        .await
        .map_err(Error::postgres(doing.to_owned()))?;
    Ok(rows(answer).first().and_then(|r| column(r, 0)) == Some("t"))
}
