//! The overview: everything an operator looks at about one database in one
//! read — the server, every migration's state and timing, drift, INVALID
//! indexes, fixtures, and the schema's tables — and its rendering as one
//! self-contained HTML page ([`Overview::to_html`]). It reads only, like
//! `verify`.

mod html;

use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Client;

use crate::pg::connect::pool_error;
use crate::pg::drift::verify::{self, VerifyReport};
use crate::pg::error::{Error, Result};
use crate::pg::report::Status;
use crate::pg::sql::{column, rows};
use crate::pg::store::fixtures::PopulatedFixture;
use crate::Migrator;

/// What [`Migrator::overview`] read.
#[derive(Debug, Clone, Serialize)]
#[must_use]
pub struct Overview {
    /// The database's name.
    pub database: String,
    /// The role connected.
    pub user: String,
    /// The server's address and port, or its Unix-domain socket.
    pub server: String,
    /// The server's version (`server_version`).
    pub server_version: String,
    /// When it was read, as the server prints it.
    pub read_at: String,
    /// The history table, qualified.
    pub history: String,
    /// Every version, as `status` gives it, with INVALID indexes.
    pub status: Status,
    /// What `verify` found.
    pub verify: VerifyReport,
    /// Every fixture embedded or populated.
    pub fixtures: Vec<FixtureState>,
    /// The schema as the snapshot describes it (`tables`, `constraints`,
    /// `indexes`, `views`, …), dbprep's own tables left out.
    pub schema: serde_json::Value,
}

/// Where one fixture stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixtureState {
    /// Its name.
    pub name: String,
    /// Its file, when the binary embeds it.
    pub file: Option<String>,
    /// When it was populated and how many rows, if it was.
    pub populated: Option<Populated>,
    /// Populated from content that differs from the embedded file's.
    pub changed: bool,
}

/// A fixture's population.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Populated {
    /// When, as the server prints it.
    pub at: String,
    /// How many rows were loaded.
    pub rows: i64,
}

impl Migrator<'_> {
    /// Read everything [`Overview`] shows, on a connection of `pool`;
    /// nothing is written.
    ///
    /// # Errors
    ///
    /// A connection or query failure.
    pub async fn overview(&self, pool: &Pool) -> Result<Overview> {
        let client = pool.get().await.map_err(pool_error)?;
        self.overview_on(&client).await
    }

    /// [`overview`](Self::overview) on a connection the caller owns.
    ///
    /// # Errors
    ///
    /// As [`overview`](Self::overview).
    pub async fn overview_on(&self, client: &Client) -> Result<Overview> {
        let answer = client
            .simple_query(
                "SELECT pg_catalog.current_database(), current_user, \
                 coalesce(pg_catalog.host(pg_catalog.inet_server_addr()) || ':' || pg_catalog.inet_server_port(), \
                          'socket, port ' || pg_catalog.current_setting('port')), \
                 pg_catalog.current_setting('server_version'), \
                 pg_catalog.to_char(pg_catalog.now(), 'YYYY-MM-DD HH24:MI:SS TZ')",
            )
            .await
            .map_err(Error::postgres("read the server's facts"))?;
        let facts = rows(answer)
            .pop()
            .ok_or_else(|| Error::Unexpected("no row of the server's facts".into()))?;
        let fact = |i: usize| column(&facts, i).unwrap_or_default().to_owned();
        // Each table read once; status and verify are both made from it.
        let observed = verify::read(client, &self.history).await?;
        let populated = self.history.populated_fixtures(client).await?;
        let repeatables = self.repeatable_states(client).await?;
        let status = self.status_from(
            &observed.rows,
            observed.running.as_ref(),
            observed.invalid_indexes.clone(),
            repeatables.clone(),
        );
        let verify = self.verify_from(observed, &populated, repeatables);
        let schema = verify::live_snapshot(client, &self.history).await?;
        Ok(Overview {
            database: fact(0),
            user: fact(1),
            server: fact(2),
            server_version: fact(3),
            read_at: fact(4),
            history: self.history.qualified(),
            status,
            verify,
            fixtures: self.fixture_states(populated),
            schema,
        })
    }

    /// The embedded fixtures in their order, then those only the database
    /// has.
    fn fixture_states(&self, mut populated: Vec<PopulatedFixture>) -> Vec<FixtureState> {
        let mut states = Vec::new();
        for fixture in self.fixtures.into_iter().flat_map(|f| f.iter()) {
            let record = populated
                .iter()
                .position(|p| p.name == fixture.name())
                .map(|i| populated.remove(i));
            states.push(FixtureState {
                name: fixture.name().to_owned(),
                file: Some(fixture.file().to_owned()),
                changed: record
                    .as_ref()
                    .is_some_and(|r| r.checksum != fixture.checksum().to_string()),
                populated: record.map(|r| Populated {
                    at: r.applied_at,
                    rows: r.rows,
                }),
            });
        }
        states.extend(populated.into_iter().map(|r| FixtureState {
            name: r.name,
            file: None,
            changed: false,
            populated: Some(Populated {
                at: r.applied_at,
                rows: r.rows,
            }),
        }));
        states
    }
}
