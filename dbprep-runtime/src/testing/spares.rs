//! Spare clones of a template, made ahead in the background, so that
//! handing out a test database is renaming one: a round trip, however
//! large the schema.
//!
//! A spare is a database named `dbprep_spare_<template hash>_<n>`, cloned
//! from its template and never connected to. Any test process on the
//! server may claim one, by renaming it to its test database's name in a
//! `DO` block that tries the spares in turn (two processes after the same
//! spare: the second finds it gone and takes the next). After each handout
//! the process tops the template's spares up to [`wanted`] (at most one
//! refill per template at a time), on a runtime of its own that outlives
//! each test's. Spares left when the tests end serve the next run with the
//! same set; they go with their template (see [`super::template`]).
//!
//! The claims go through one admin connection kept for the process (a new
//! connection costs more than the rename); refills and slow clones use
//! connections of their own so that they never queue in front of a claim.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::runtime::Handle;
use tokio::sync::OnceCell;
use tokio_postgres::{Client, Config, NoTls};

use super::database::TestingError;
use crate::pg::sql::{ident, literal};

/// The environment variable that sets how many spare clones a template
/// keeps (default 4; `0`: none).
pub const SPARES_VARIABLE: &str = "DBPREP_TEST_SPARES";

/// How many spares a template keeps by default: enough for the tests a
/// machine runs at once to find one each, few enough to be cheap to make.
const DEFAULT_SPARES: usize = 4;

/// The prefix of every spare's name.
pub(crate) const PREFIX: &str = "dbprep_spare_";

/// The prefix of the spares of the template whose hash (its name's 16 hex
/// digits) is `hash`.
pub(crate) fn prefix(hash: &str) -> String {
    format!("{PREFIX}{hash}_")
}

/// The count [`set_spares`] chose, or `usize::MAX` when it was not called.
static CHOSEN: AtomicUsize = AtomicUsize::new(usize::MAX);

/// How many spare clones each template keeps from now on in this process
/// (`0`: none, each handout clones the template), instead of
/// [`SPARES_VARIABLE`] or the default, 4.
pub fn set_spares(count: usize) {
    CHOSEN.store(count, Ordering::Relaxed);
}

/// How many spares a template keeps: [`set_spares`], else
/// [`SPARES_VARIABLE`], else [`DEFAULT_SPARES`]; `0` turns them off.
pub(crate) fn wanted() -> usize {
    match CHOSEN.load(Ordering::Relaxed) {
        usize::MAX => std::env::var(SPARES_VARIABLE)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_SPARES),
        chosen => chosen,
    }
}

/// A runtime on a thread of its own, alive as long as the process: it
/// drives the kept admin connection and makes spares, which a test's own
/// runtime (gone when the test ends) could not.
fn background() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the test support's runtime: {e}"));
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("dbprep-test-spares".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .unwrap_or_else(|e| panic!("cannot start the test support's thread: {e}"));
        handle
    })
}

/// A connection driven by the background runtime, usable from any other.
async fn connect_in_background(config: &Config) -> Result<Client, TestingError> {
    let config = config.clone();
    background()
        .spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok(client)
        })
        .await
        .unwrap_or_else(|e| panic!("the test support's runtime failed: {e}"))
        .map_err(|source| TestingError::Postgres {
            what: "connect to the test server".into(),
            source,
        })
}

/// The process's kept admin connection (to the one server its tests use),
/// or `None` when it was lost (the server restarted under the tests).
async fn admin(config: &Config) -> Result<Option<Arc<Client>>, TestingError> {
    static ADMIN: OnceCell<Arc<Client>> = OnceCell::const_new();
    let client = ADMIN
        .get_or_try_init(|| async { connect_in_background(config).await.map(Arc::new) })
        .await?;
    Ok((!client.is_closed()).then(|| Arc::clone(client)))
}

/// Claim a spare of the template whose hash is `hash`, renaming it to
/// `name`: `false` when there is none.
pub(crate) async fn claim(
    admin_config: &Config,
    hash: &str,
    name: &str,
) -> Result<bool, TestingError> {
    if wanted() == 0 {
        return Ok(false);
    }
    let Some(admin) = admin(admin_config).await? else {
        return Ok(false);
    };
    // 3D000: a peer renamed it first; 55006: someone is connected to it
    // (nobody should be): either way, the next one.
    let sql = format!(
        "DO $dbprep$ DECLARE spare text; BEGIN
PERFORM pg_catalog.set_config('dbprep.claimed', '', false);
FOR spare IN SELECT datname FROM pg_catalog.pg_database WHERE pg_catalog.starts_with(datname, {prefix}) ORDER BY datname LOOP
    BEGIN
        EXECUTE pg_catalog.format('ALTER DATABASE %I RENAME TO %I', spare, {name});
        PERFORM pg_catalog.set_config('dbprep.claimed', spare, false);
        RETURN;
    EXCEPTION WHEN invalid_catalog_name OR object_in_use THEN NULL;
    END;
END LOOP;
END $dbprep$;
SELECT pg_catalog.current_setting('dbprep.claimed')",
        prefix = literal(&prefix(hash)),
        name = literal(name),
    );
    let answer = admin
        .simple_query(&sql)
        .await
        .map_err(|source| TestingError::Postgres {
            what: "claim a spare test database".into(),
            source,
        })?;
    let claimed = crate::pg::sql::rows(answer)
        .first()
        .and_then(|row| crate::pg::sql::column(row, 0).map(str::to_owned))
        .unwrap_or_default();
    Ok(!claimed.is_empty())
}

/// Top the spares of `template` (whose hash is `hash`) up to [`wanted`], in
/// the background; nothing when a refill of it is already under way.
pub(crate) fn refill(admin_config: &Config, template: &str, hash: &str) {
    static REFILLING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let wanted = wanted();
    if wanted == 0 {
        return;
    }
    {
        let mut refilling = REFILLING.lock().unwrap_or_else(|e| e.into_inner());
        if !refilling.insert(template.to_owned()) {
            return;
        }
    }
    let (config, template, hash) = (admin_config.clone(), template.to_owned(), hash.to_owned());
    background().spawn(async move {
        if let Err(e) = make_spares(&config, &template, &hash, wanted).await {
            tracing::warn!("cannot make spare test databases of {template}: {e}");
        }
        REFILLING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&template);
    });
}

/// Clone `template` until it has `wanted` spares (counting every
/// process's).
async fn make_spares(
    config: &Config,
    template: &str,
    hash: &str,
    wanted: usize,
) -> Result<(), TestingError> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let (client, connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|source| TestingError::Postgres {
                what: "connect to the test server".into(),
                source,
            })?;
    tokio::spawn(connection);
    let postgres = |what: String| move |source| TestingError::Postgres { what, source };
    let count = format!(
        "SELECT count(*) FROM pg_catalog.pg_database WHERE pg_catalog.starts_with(datname, {})",
        literal(&prefix(hash))
    );
    loop {
        let have: i64 = client
            .query_one(&count, &[])
            .await
            .map_err(postgres("count the spare test databases".into()))?
            .get(0);
        if have >= wanted as i64 {
            return Ok(());
        }
        let spare = format!(
            "{}{}_{}",
            prefix(hash),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                ident(&spare),
                ident(template)
            ))
            .await
            .map_err(postgres(format!("create the spare {spare}")))?;
    }
}
