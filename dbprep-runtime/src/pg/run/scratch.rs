//! A scratch database: made on a server for work whose result is all that
//! matters (a squash, a reversibility check), then dropped.

use std::time::Duration;

use tokio_postgres::{Client, Config};

use crate::pg::connect::{connect_with, PoolTls};
use crate::pg::error::{Error, Result};
use crate::pg::sql::ident;

/// A database made for one piece of work.
pub(crate) struct Scratch {
    admin: Client,
    /// Its name: `dbprep_<purpose>_<run id>`.
    pub name: String,
    /// The settings of the server, for this database.
    pub config: Config,
}

impl Scratch {
    /// A new database on the server of `server` (whose role needs
    /// `CREATEDB`), named for `purpose`.
    pub(crate) async fn create<T: PoolTls>(
        server: &Config,
        tls: T,
        purpose: &str,
    ) -> Result<Scratch> {
        let mut admin_config = server.clone();
        admin_config.dbname("postgres");
        let admin = connect_with(&admin_config, tls, Duration::ZERO).await?;
        let name = format!(
            "dbprep_{purpose}_{}",
            super::session::run_id().replace('-', "_")
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {}", ident(&name)))
            .await
            .map_err(Error::postgres(format!(
                "create the scratch database {name}"
            )))?;
        let mut config = server.clone();
        config.dbname(&name);
        Ok(Scratch {
            admin,
            name,
            config,
        })
    }

    /// Drop it (a failure is only logged: the work is done).
    pub(crate) async fn drop(self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&self.name));
        if let Err(e) = self.admin.batch_execute(&sql).await {
            tracing::warn!("could not drop the scratch database {}: {e}", self.name);
        }
    }
}
