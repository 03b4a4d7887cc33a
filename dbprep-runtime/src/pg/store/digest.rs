//! The history's digest, `<history>_digest`: one row with the history's row
//! count and an XOR of a hash of each row, kept by a trigger, so that a
//! start-up reads one short row instead of the history.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::{query_bool, HistoryTable};
use crate::model::checksum::history_row_hash;
use crate::model::history::HistoryRow;
use crate::model::migration::{Migration, Migrations};
use crate::pg::error::{is_sqlstate, Error, Result};
use crate::pg::sql::{column, ident, literal, rows};

/// The setting under which the digest trigger leaves a history insert to
/// the run, which writes the digest when it ends (see
/// [`HistoryTable::create_digest_sql`]).
pub(crate) const DIGEST_DEFERRED: &str = "dbprep.digest_deferred";

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

impl HistoryTable {
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
    ///
    /// No row when the history table itself is gone (dropped by hand: its
    /// digest would still say "up to date").
    pub(crate) fn digest_sql(&self) -> String {
        format!(
            "SELECT rows, hash FROM {} WHERE pg_catalog.to_regclass({}) IS NOT NULL",
            self.digest_table(),
            literal(&self.qualified())
        )
    }

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

    /// A boolean expression: the history has the digest trigger this
    /// version of dbprep expects, one whose `WHEN` leaves a batch's inserts
    /// to the run (an older one would count those rows twice).
    pub(crate) fn digest_trigger_current_sql(&self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass({t}) \
             AND tgname = {trigger} AND tgqual IS NOT NULL)",
            t = literal(&self.qualified()),
            trigger = literal(&format!("{}_digest", self.table)),
        )
    }

    /// Whether the digest table has its one row (it may have been deleted
    /// by hand). The table must exist.
    pub(crate) async fn digest_row_exists(&self, client: &Client) -> Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT FROM {})", self.digest_table());
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
