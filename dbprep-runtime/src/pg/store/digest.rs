//! The history's digest, `<history>_digest`: one row with the history's row
//! count and an XOR of a hash of each row, kept by a trigger, so that a
//! start-up reads one short row instead of the history.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::{query_bool, HistoryTable};
use crate::model::checksum::history_row_hash;
use crate::model::history::HistoryRow;
use crate::model::migration::Migrations;
use crate::pg::error::{is_sqlstate, Error, Result};
use crate::pg::sql::{column, ident, literal, rows};

/// The setting under which the digest trigger leaves a history insert to
/// the run, which writes the digest when it ends (see
/// [`HistoryTable::create_digest_sql`]).
const DIGEST_DEFERRED: &str = "dbprep.digest_deferred";

/// What a run's first transaction takes off the digest's row count, to
/// mark the history "in progress" until the run writes the digest at its
/// end: no history has a negative count, so every start-up sees the digest
/// as stale, while the trigger keeps adding what other sessions change.
const IN_PROGRESS: i64 = 1 << 40;

/// The statement that leaves the history's inserts and updates of the
/// transaction to the run (`on`), or to the trigger again (`off`): on for
/// dbprep's own writes alone, so that a migration's SQL that changes the
/// history moves the digest.
pub(crate) fn digest_deferred_sql(on: bool) -> String {
    let value = if on { "on" } else { "off" };
    format!("SET LOCAL {DIGEST_DEFERRED} = {value};\n")
}

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

    /// The digest with `rows` added: what a run's deferred inserts make
    /// of the digest they did not touch.
    pub(crate) fn and_rows(self, rows: &[HistoryRow]) -> Self {
        rows.iter().fold(self, |d, r| {
            d.with(history_row_hash(
                r.version,
                r.checksum.as_deref().unwrap_or(""),
                r.success,
            ))
        })
    }

    /// The digest of history rows as read.
    pub(crate) fn of_rows(rows: &[HistoryRow]) -> Self {
        HistoryDigest::default().and_rows(rows)
    }

    /// The digest as it was before a run marked it "in progress" (see
    /// [`HistoryTable::digest_in_progress_sql`]), with what the trigger
    /// added since.
    pub(crate) fn unmarked(self) -> Self {
        if self.rows < -(IN_PROGRESS / 2) {
            HistoryDigest {
                rows: self.rows + IN_PROGRESS,
                ..self
            }
        } else {
            self
        }
    }
}

/// A history known from its digest alone: the first `applied` versioned
/// migrations, each applied once from its embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// The digest of those rows.
    pub digest: HistoryDigest,
    /// How many versioned migrations, from the first, it holds.
    pub applied: usize,
    /// The newest of them.
    pub version: Option<i64>,
}

/// The prefix of the embedded versions whose digest `digest` is, when
/// something within `target` follows it: the history then holds exactly
/// those rows, all successful, with the embedded checksums (the trust the
/// no-op start-up puts in the digest). `None` for a set with baselines
/// (whose histories are not prefixes) and for any other digest.
pub(crate) fn applied_prefix(
    migrations: &Migrations,
    target: Option<i64>,
    digest: HistoryDigest,
) -> Option<Prefix> {
    if !migrations.baselines().is_empty() {
        return None;
    }
    let mut prefix = Prefix {
        digest: HistoryDigest::default(),
        applied: 0,
        version: None,
    };
    for m in migrations.iter().take_while(|m| m.within(target)) {
        if prefix.digest == digest {
            return Some(prefix);
        }
        prefix = Prefix {
            digest: prefix.digest.with(m.history_hash()),
            applied: prefix.applied + 1,
            version: Some(m.version()),
        };
    }
    None
}

/// The digests of every up-to-date history `migrations` can leave at
/// `target`: everything applied one by one, or a baseline followed by the
/// migrations after it. Only XORs of hashes computed at compile time.
pub(crate) fn up_to_date_digests(
    migrations: &Migrations,
    target: Option<i64>,
) -> Vec<HistoryDigest> {
    let digest = |from: i64| {
        migrations
            .iter()
            .filter(|m| m.within(target) && m.version() > from)
            .fold(HistoryDigest::default(), |d, m| d.with(m.history_hash()))
    };
    let mut digests = vec![digest(i64::MIN)];
    for baseline in migrations.baselines().iter().filter(|b| b.within(target)) {
        digests.push(digest(baseline.version()).with(baseline.history_hash()));
    }
    digests
}

/// The digest in the first two columns of `row`; one that does not read
/// as numbers (changed by hand) as a stale one.
fn digest_from(row: &tokio_postgres::SimpleQueryRow) -> HistoryDigest {
    let text = |i| column(row, i).unwrap_or_default();
    HistoryDigest {
        rows: text(0).parse().unwrap_or(-1),
        hash: text(1).parse().unwrap_or_default(),
    }
}

/// An expression: the hash of the history row `row` (an alias, `OLD` or
/// `NEW`), as [`history_row_hash`] computes it.
fn row_hash_sql(row: &str) -> String {
    format!("('x' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({row}.version::text || ':' || coalesce(pg_catalog.encode({row}.checksum, 'hex'), '') || ':' || {row}.success::text, 'UTF8')), 'hex'), 16))::bit(64)::bigint")
}

impl HistoryTable {
    /// The statement that (re)creates the digest table, its trigger, and
    /// sets the digest to `digest` (of the rows the history holds now).
    /// `fresh`: neither the digest table nor the history existed before
    /// this transaction, so there is no trigger to replace and no row to
    /// delete (each of those statements costs a first run its planning).
    ///
    /// The trigger keeps the digest for every change, except the history
    /// inserts of a migration batch: they run with [`DIGEST_DEFERRED`] set,
    /// and the run writes the digest once, from the rows, when it ends
    /// ([`HistoryTable::finish_run_sql`]); no PL/pgSQL call, SHA-256 or
    /// digest update per migration.
    ///
    /// The table has no primary key: its one row is written by dbprep
    /// alone, under the lock, replaced whole rather than upserted, and an
    /// index would cost every first run its build, which syncs the new
    /// file to disk. Tables made by earlier versions keep theirs.
    pub(crate) fn create_digest_sql(&self, digest: HistoryDigest, fresh: bool) -> String {
        let t = self.qualified();
        let d = self.digest_table();
        let f = self.digest_function();
        let trigger = ident(&format!("{}_digest", self.table));
        let truncate_trigger = ident(&format!("{}_digest_truncate", self.table));
        let replace = |sql: String| if fresh { String::new() } else { sql };
        format!(
            "CREATE TABLE IF NOT EXISTS {d} (
    only_row boolean NOT NULL DEFAULT true CHECK (only_row),
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
{drop_trigger}CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW
    WHEN (pg_catalog.current_setting('{DIGEST_DEFERRED}', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION {f}();
{drop_truncate_trigger}CREATE TRIGGER {truncate_trigger} AFTER TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {f}();
{delete}INSERT INTO {d} (only_row, rows, hash) VALUES (true, {rows}, {h});",
            drop_trigger = replace(format!("DROP TRIGGER IF EXISTS {trigger} ON {t};\n")),
            drop_truncate_trigger =
                replace(format!("DROP TRIGGER IF EXISTS {truncate_trigger} ON {t};\n")),
            delete = replace(format!("DELETE FROM {d};\n")),
            old = row_hash_sql("OLD"),
            new = row_hash_sql("NEW"),
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
        Ok(rows(answer).first().map(digest_from))
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
    /// have (a negative count), so that a run killed half-way leaves one
    /// that every start-up sees as stale; the run writes the real one when
    /// it ends. Marking subtracts (once), so that what the trigger adds for
    /// other sessions meanwhile is kept: at its end a run that knew the
    /// history from its digest finds it [`unmarked`](HistoryDigest::unmarked)
    /// and unchanged, or reads the history.
    pub(crate) fn digest_in_progress_sql(&self) -> String {
        format!(
            "UPDATE {} SET rows = rows - {IN_PROGRESS} WHERE rows >= 0;\n",
            self.digest_table()
        )
    }

    /// The digest and the newest `installed_rank` (0 for an empty
    /// history), in one statement. The tables must exist.
    pub(crate) async fn digest_and_last_rank(
        &self,
        client: &Client,
    ) -> Result<Option<(HistoryDigest, i32)>> {
        let sql = format!(
            "SELECT rows, hash, (SELECT coalesce(max(installed_rank), 0) FROM {}) FROM {}",
            self.qualified(),
            self.digest_table()
        );
        let answer = client
            .simple_query(&sql)
            .await
            .map_err(Error::postgres("read the history digest"))?;
        rows(answer)
            .first()
            .map(|row| {
                let rank = column(row, 2).and_then(|r| r.parse().ok()).ok_or_else(|| {
                    Error::Unexpected(format!(
                        "the newest installed_rank of {} is not an integer",
                        self.qualified()
                    ))
                })?;
                Ok((digest_from(row), rank))
            })
            .transpose()
    }

    /// The end of a run that knew the history before it as `prefix`, sent
    /// before the run has read what it wrote: the digest becomes the
    /// prefix's and that of the rows the run `run_id` wrote above it,
    /// computed by the server from those rows, unless it is no longer the
    /// prefix's marked "in progress" (the history changed otherwise: the
    /// run then reads it, and writes the digest from what it read with
    /// [`finish_run_sql`](Self::finish_run_sql)). PostgreSQL 14+
    /// (`bit_xor`).
    pub(crate) fn finish_run_after_prefix_sql(&self, prefix: &Prefix, run_id: &str) -> String {
        let above = prefix
            .version
            .map_or(String::new(), |v| format!(" AND h.version > {v}"));
        digest_write(format!(
            "UPDATE {d} SET rows = {rows} + r.n, hash = {hash} # r.x \
             FROM (SELECT count(*) AS n, coalesce(bit_xor({row}), 0) AS x FROM {t} h WHERE h.run_id = {run}{above}) AS r \
             WHERE {d}.rows = {marked} AND {d}.hash = {hash};",
            d = self.digest_table(),
            t = self.qualified(),
            rows = prefix.digest.rows,
            hash = prefix.digest.hash,
            marked = prefix.digest.rows - IN_PROGRESS,
            row = row_hash_sql("h"),
            run = literal(run_id),
        ))
    }

    /// The end of a run: `digest` (of the history as the
    /// run leaves it, under the lock) written without waiting for the disk
    /// (lost in a crash, it is rebuilt by the next run). Written only over the digest `seen` before
    /// the history was read: a session that changed the history since (its
    /// trigger moved the digest) would otherwise be overwritten with a
    /// digest that misses its change; the digest then stays "in progress",
    /// or the trigger's, and the next run reads the history.
    pub(crate) fn finish_run_sql(&self, digest: HistoryDigest, seen: HistoryDigest) -> String {
        digest_write(format!(
            "UPDATE {d} SET rows = {rows}, hash = {hash} WHERE rows = {seen_rows} AND hash = {seen_hash} \
             AND (rows, hash) IS DISTINCT FROM ({rows}::int8, {hash}::int8);",
            d = self.digest_table(),
            rows = digest.rows,
            hash = digest.hash,
            seen_rows = seen.rows,
            seen_hash = seen.hash,
        ))
    }
}

/// The transaction of the end of a run's `update` of the digest: committed
/// without waiting for the disk (lost in a crash, the digest is rebuilt by
/// the next run), with dbprep's own search path.
fn digest_write(update: String) -> String {
    format!(
        "BEGIN;\nSET LOCAL synchronous_commit = off;\nSET LOCAL search_path = pg_catalog;\n{update}\nCOMMIT;\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::history::{set, RowKind};
    use crate::model::migration::Migration;

    fn applied(m: &Migration) -> HistoryRow {
        HistoryRow {
            version: m.version(),
            name: m.name().to_owned(),
            checksum: Some(m.checksum().to_string()),
            kind: RowKind::Migration,
            success: true,
            installed_rank: 1,
            applied_at: "2026-12-07 10:00:00+00".into(),
            execution_ms: 1,
            applied_by: "app".into(),
        }
    }

    fn three() -> Migrations {
        set(&[
            ("V1__a.sql", "CREATE TABLE a ();"),
            ("V2__b.sql", "CREATE TABLE b ();"),
            ("V3__c.sql", "CREATE TABLE c ();"),
        ])
    }

    #[test]
    fn a_history_of_the_first_versions_is_known_from_its_digest() {
        let set = three();
        let rows: Vec<HistoryRow> = set.iter().map(applied).collect();
        for applied_rows in 0..3 {
            let digest = HistoryDigest::of_rows(&rows[..applied_rows]);
            let prefix = applied_prefix(&set, None, digest).unwrap();
            assert_eq!(prefix.applied, applied_rows);
            assert_eq!(prefix.digest, digest);
            assert_eq!(
                prefix.version,
                applied_rows.checked_sub(1).map(|i| rows[i].version)
            );
        }
        // Up to date, or at the target: nothing follows within it.
        assert_eq!(
            applied_prefix(&set, None, HistoryDigest::of_rows(&rows)),
            None
        );
        let two = HistoryDigest::of_rows(&rows[..2]);
        assert_eq!(applied_prefix(&set, Some(2), two), None);
        assert_eq!(
            applied_prefix(&set, Some(2), HistoryDigest::of_rows(&rows[..1])).map(|p| p.applied),
            Some(1)
        );
    }

    #[test]
    fn any_other_history_is_not_a_prefix() {
        let set = three();
        let rows: Vec<HistoryRow> = set.iter().map(applied).collect();
        // A gap, a failed row, an edited file, an unknown version.
        let gap = [rows[0].clone(), rows[2].clone()];
        let failed = [
            rows[0].clone(),
            HistoryRow {
                success: false,
                ..rows[1].clone()
            },
        ];
        let edited = [HistoryRow {
            checksum: Some("00".repeat(32)),
            ..rows[0].clone()
        }];
        let unknown = [HistoryRow {
            version: 9,
            ..rows[0].clone()
        }];
        for history in [&gap[..], &failed, &edited, &unknown] {
            assert_eq!(
                applied_prefix(&set, None, HistoryDigest::of_rows(history)),
                None
            );
        }
        // A run's mark, which no history has.
        let marked = HistoryDigest {
            rows: 1 - IN_PROGRESS,
            ..HistoryDigest::of_rows(&rows[..1])
        };
        assert_eq!(applied_prefix(&set, None, marked), None);
        // A set with baselines keeps reading its history.
        let with_baseline = set_with_baseline();
        let first = applied(with_baseline.iter().next().unwrap());
        assert_eq!(
            applied_prefix(&with_baseline, None, HistoryDigest::of_rows(&[first])),
            None
        );
    }

    fn set_with_baseline() -> Migrations {
        set(&[
            ("V1__a.sql", "CREATE TABLE a ();"),
            ("V2__b.sql", "CREATE TABLE b ();"),
            ("B2__base.sql", "CREATE TABLE a (); CREATE TABLE b ();"),
        ])
    }

    #[test]
    fn a_mark_keeps_what_the_trigger_adds_and_comes_off() {
        let set = three();
        let rows: Vec<HistoryRow> = set.iter().map(applied).collect();
        let before = HistoryDigest::of_rows(&rows[..2]);
        let marked = HistoryDigest {
            rows: before.rows - IN_PROGRESS,
            ..before
        };
        assert!(marked.rows < 0);
        assert_eq!(marked.unmarked(), before);
        assert_eq!(before.unmarked(), before);
        // A row another session deletes meanwhile, through the trigger.
        let hash =
            |r: &HistoryRow| history_row_hash(r.version, r.checksum.as_deref().unwrap(), true);
        let deleted = HistoryDigest {
            rows: marked.rows - 1,
            hash: marked.hash ^ hash(&rows[1]),
        };
        assert_eq!(deleted.unmarked(), HistoryDigest::of_rows(&rows[..1]));
        // A digest the run adds its own rows to.
        assert_eq!(before.and_rows(&rows[2..]), HistoryDigest::of_rows(&rows));
        // The mark of an older version of dbprep is no history's either.
        assert_eq!(HistoryDigest { rows: -1, hash: 0 }.unmarked().rows, -1);
    }
}
