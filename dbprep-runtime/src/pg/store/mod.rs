//! dbprep's own tables, one home for their names, their DDL and every
//! statement that reads or writes them:
//!
//! - `history`: `dbprep_schema_history`, one row per applied version;
//! - `digest`: `<history>_digest`, one row summarizing the history, which a
//!   start-up reads instead of the history;
//! - the schema snapshot (`dbprep_schema_snapshot`), the fixture history
//!   (`dbprep_fixture_history`) and the lock's lease (`<history>_lock`).
//!
//! Every name is written schema-qualified: a migration's `SET search_path`
//! must not redirect dbprep's statements.

pub(crate) mod digest;
pub(crate) mod fixtures;
pub(crate) mod history;
pub(crate) mod lease;
pub mod repeatables;
pub(crate) mod snapshot;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use self::snapshot::SnapshotTable;
use crate::pg::error::{Error, Result};
use crate::pg::sql::{column, ident, literal, rows};

/// Where the history lives: a schema and a table name, always written
/// schema-qualified (a migration's `SET search_path` must not redirect it).
/// dbprep's other tables sit beside it, in the same schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryTable {
    /// The schema (default `public`).
    pub schema: String,
    /// The table (default `dbprep_schema_history`).
    pub table: String,
    /// The schemas the schema snapshot describes (and `verify` compares);
    /// empty, the default: every schema of the database but the system's.
    /// A tenant's snapshot describes its schema alone.
    pub snapshot_schemas: Vec<String>,
}

impl Default for HistoryTable {
    fn default() -> Self {
        HistoryTable {
            schema: "public".into(),
            table: "dbprep_schema_history".into(),
            snapshot_schemas: Vec::new(),
        }
    }
}

impl HistoryTable {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        self.beside(&self.table)
    }

    /// The one-row table that summarizes the history: its row count and the
    /// XOR of a 64-bit hash of each row, kept by a trigger on every change
    /// (by dbprep or by hand). A start-up reads this row instead of the
    /// history: one short answer, however many migrations were applied.
    pub fn digest_table(&self) -> String {
        self.beside(&format!("{}_digest", self.table))
    }

    /// The one-row table of the migration lock's lease, in
    /// [`LockMode::Transaction`](crate::pg::run::lock::LockMode::Transaction):
    /// which run holds it, and until when.
    pub fn lease_table(&self) -> String {
        self.beside(&format!("{}_lock", self.table))
    }

    /// The function of the digest's trigger.
    pub(crate) fn digest_function(&self) -> String {
        self.beside(&format!("{}_digest_update", self.table))
    }

    /// An object of this schema, qualified and quoted.
    fn beside(&self, name: &str) -> String {
        format!("{}.{}", ident(&self.schema), ident(name))
    }

    /// The table that holds the last snapshot.
    pub fn snapshot_table(&self) -> String {
        self.beside("dbprep_schema_snapshot")
    }

    /// The table of applied fixtures.
    pub fn fixture_table(&self) -> String {
        self.beside("dbprep_fixture_history")
    }

    /// Every table of dbprep's, qualified: no schema snapshot describes
    /// them.
    pub(crate) fn own_tables(&self) -> [String; 6] {
        [
            self.qualified(),
            self.repeatable_table(),
            self.digest_table(),
            self.snapshot_table(),
            self.fixture_table(),
            self.lease_table(),
        ]
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

    /// A boolean expression: the table's schema exists.
    fn schema_exists_sql(&self) -> String {
        format!(
            "pg_catalog.to_regnamespace({}) IS NOT NULL",
            literal(&ident(&self.schema))
        )
    }

    /// An expression of type text: the other schemas that have a table of
    /// the history's name, each double-quoted as [`ident`] writes it,
    /// comma-separated, in order (empty: none).
    fn histories_elsewhere_sql(&self) -> String {
        format!(
            "(SELECT coalesce(pg_catalog.string_agg('\"' || pg_catalog.replace(n.nspname, '\"', '\"\"') || '\"', ', ' \
             ORDER BY n.nspname COLLATE \"C\"), '') FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = {} AND c.relkind IN ('r', 'p') AND n.nspname <> {})",
            literal(&self.table),
            literal(&self.schema)
        )
    }

    /// Whether the table's schema exists.
    pub(crate) async fn schema_exists(&self, client: &Client) -> Result<bool> {
        let sql = format!("SELECT {}", self.schema_exists_sql());
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

    /// What a run finds of dbprep's tables under the lock, in one
    /// statement (one round trip, one plan, instead of one for each).
    ///
    /// When the run found no digest before the lock (`digest_missing`: most
    /// likely the database's first run), it first asks only whether any of
    /// the tables exists, and looks further when one does: planning the
    /// whole look, in a new session, cost a first run more than the
    /// round trip this adds when a table is there after all.
    pub(crate) async fn look_at_tables(
        &self,
        client: &Client,
        digest_missing: bool,
    ) -> Result<Tables> {
        if digest_missing {
            let sql = format!(
                "SELECT {} OR {} OR {}, {}, {}",
                relation_exists_sql(&self.qualified()),
                relation_exists_sql(&self.digest_table()),
                relation_exists_sql(&self.snapshot_table()),
                self.schema_exists_sql(),
                self.histories_elsewhere_sql(),
            );
            let answer = client
                .simple_query(&sql)
                .await
                .map_err(Error::postgres("look for the history tables"))?;
            let rows = rows(answer);
            let yes = |i| rows.first().and_then(|row| column(row, i)) == Some("t");
            if !yes(0) {
                let elsewhere = rows.first().and_then(|row| column(row, 2));
                return Ok(Tables::none(
                    yes(1),
                    elsewhere.unwrap_or_default().to_owned(),
                ));
            }
        }
        let sql = format!(
            "SELECT {history}, {schema}, {digest}, {trigger}, {snapshot}, {columns}, {elsewhere}",
            history = relation_exists_sql(&self.qualified()),
            columns = self.columns_as_made_sql(),
            schema = self.schema_exists_sql(),
            digest = relation_exists_sql(&self.digest_table()),
            trigger = self.digest_trigger_current_sql(),
            snapshot = self.snapshot_table_state_sql(),
            elsewhere = self.histories_elsewhere_sql(),
        );
        let answer = client
            .simple_query(&sql)
            .await
            .map_err(Error::postgres("look at the history tables"))?;
        let rows = rows(answer);
        let row = rows.first().ok_or_else(|| {
            Error::Unexpected("the look at the history tables answered no row".into())
        })?;
        let yes = |i| column(row, i) == Some("t");
        Ok(Tables {
            history: yes(0),
            schema: yes(1),
            digest: yes(2),
            digest_trigger_current: yes(3),
            snapshot: SnapshotTable::parse(column(row, 4)),
            history_as_made: yes(5),
            histories_elsewhere: column(row, 6).unwrap_or_default().to_owned(),
        })
    }

    /// The advisory-lock key of this table: the first 8 bytes of the SHA-256
    /// of its qualified name, so that two histories in one database do not
    /// block each other.
    pub fn lock_key(&self) -> i64 {
        let digest = Sha256::digest(format!("dbprep:{}", self.qualified()).as_bytes());
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// dbprep's tables as a run finds them under the lock
/// ([`HistoryTable::look_at_tables`]).
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    /// The history table exists.
    pub(crate) history: bool,
    /// Its schema exists.
    pub(crate) schema: bool,
    /// The digest table exists.
    pub(crate) digest: bool,
    /// The history has the digest trigger of this version of dbprep.
    pub(crate) digest_trigger_current: bool,
    /// The snapshot table's state.
    pub(crate) snapshot: SnapshotTable,
    /// The history has the columns dbprep makes, of their types.
    pub(crate) history_as_made: bool,
    /// The other schemas of the database that have a table of the
    /// history's name, double-quoted and comma-separated (empty: none).
    pub(crate) histories_elsewhere: String,
}

impl Tables {
    /// None of dbprep's tables, in a schema that exists or not, with
    /// histories in the schemas `elsewhere`.
    fn none(schema: bool, elsewhere: String) -> Tables {
        Tables {
            history: false,
            schema,
            digest: false,
            digest_trigger_current: false,
            snapshot: SnapshotTable::Missing,
            history_as_made: false,
            histories_elsewhere: elsewhere,
        }
    }
}

/// A boolean expression: a (qualified, quoted) relation exists.
fn relation_exists_sql(relation: &str) -> String {
    format!("pg_catalog.to_regclass({}) IS NOT NULL", literal(relation))
}

/// Whether a (qualified, quoted) relation exists.
pub(crate) async fn relation_exists(client: &Client, relation: &str) -> Result<bool> {
    let sql = format!("SELECT {}", relation_exists_sql(relation));
    query_bool(client, &sql, &format!("look for {relation}")).await
}

/// The boolean a one-value query answers; `doing` names the step in an
/// error.
pub(crate) async fn query_bool(client: &Client, sql: &str, doing: &str) -> Result<bool> {
    let answer = client
        .simple_query(sql)
        .await
        .map_err(Error::postgres(doing.to_owned()))?;
    Ok(rows(answer).first().and_then(|r| column(r, 0)) == Some("t"))
}
