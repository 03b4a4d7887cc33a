//! What a walk over the tenants tells: one outcome per tenant, in rollout
//! order, and counts by state.

use std::fmt;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::pg::drift::verify::VerifyReport;
use crate::pg::error::Error;
use crate::pg::report::{show, Report, State, Status};

/// What [`Migrator::run_each`](crate::Migrator::run_each) (and
/// `status_each`, `verify_each`) did, tenant by tenant.
#[derive(Debug)]
#[must_use = "a tenant may have failed; check `is_success` or `failed`"]
pub struct EachReport<T> {
    /// Every tenant, in rollout order.
    pub tenants: Vec<TenantOutcome<T>>,
    /// How long the whole walk took.
    pub elapsed: Duration,
}

/// One tenant's part in a walk.
#[derive(Debug)]
pub struct TenantOutcome<T> {
    /// The tenant's schema or database.
    pub tenant: String,
    /// What became of it.
    pub result: TenantResult<T>,
    /// How long it took, connection included.
    pub elapsed: Duration,
}

/// What became of one tenant.
#[derive(Debug)]
pub enum TenantResult<T> {
    /// Its run (or read) returned this report.
    Done(T),
    /// It failed: nothing of a failed transactional migration remains, and
    /// a rerun picks the tenant up.
    Failed(Error),
    /// The rollout stopped (a canary or, under [`OnFailure::Stop`], another
    /// tenant failed) before it began.
    ///
    /// [`OnFailure::Stop`]: crate::OnFailure::Stop
    NotStarted,
}

impl<T> TenantOutcome<T> {
    /// The report, when it was done.
    pub fn report(&self) -> Option<&T> {
        match &self.result {
            TenantResult::Done(report) => Some(report),
            _ => None,
        }
    }

    /// The error, when it failed.
    pub fn error(&self) -> Option<&Error> {
        match &self.result {
            TenantResult::Failed(error) => Some(error),
            _ => None,
        }
    }
}

impl<T> EachReport<T> {
    /// Whether every tenant was done without an error.
    pub fn is_success(&self) -> bool {
        self.tenants
            .iter()
            .all(|t| matches!(t.result, TenantResult::Done(_)))
    }

    /// The tenants that failed, with their errors.
    pub fn failed(&self) -> impl Iterator<Item = &TenantOutcome<T>> {
        self.tenants.iter().filter(|t| t.error().is_some())
    }

    /// The tenants the rollout did not start.
    pub fn not_started(&self) -> impl Iterator<Item = &str> {
        self.tenants
            .iter()
            .filter(|t| matches!(t.result, TenantResult::NotStarted))
            .map(|t| t.tenant.as_str())
    }

    /// The outcome of one tenant.
    pub fn tenant(&self, name: &str) -> Option<&TenantOutcome<T>> {
        self.tenants.iter().find(|t| t.tenant == name)
    }
}

/// What one tenant's report says in a word and in a line: the reports a
/// walk over tenants returns implement it, for the walk's summary.
pub trait TenantSummary {
    /// The tenant's state, by which a walk's summary counts: `migrated`,
    /// `up to date`, `pending`, `dirty`, `drift`, `clean`.
    fn state(&self) -> &'static str;
    /// One line about it.
    fn summary(&self) -> String;
}

impl TenantSummary for Report {
    fn state(&self) -> &'static str {
        if self.was_up_to_date() {
            "up to date"
        } else {
            "migrated"
        }
    }

    fn summary(&self) -> String {
        if self.was_up_to_date() {
            return format!("up to date at version {}", show(self.version));
        }
        format!(
            "applied {} migration(s){}, at version {}",
            self.applied.len(),
            match self.repeatables.len() {
                0 => String::new(),
                n => format!(" and {n} repeatable(s)"),
            },
            show(self.version)
        )
    }
}

impl TenantSummary for Status {
    fn state(&self) -> &'static str {
        let any = |f: fn(&State) -> bool| self.entries.iter().any(|e| f(&e.state));
        if any(|s| matches!(s, State::Dirty)) {
            "dirty"
        } else if any(|s| matches!(s, State::Edited { .. } | State::Unknown)) {
            "drift"
        } else if any(|s| matches!(s, State::Pending)) {
            "pending"
        } else {
            "up to date"
        }
    }

    fn summary(&self) -> String {
        let count = |f: fn(&State) -> bool| self.entries.iter().filter(|e| f(&e.state)).count();
        let at = self
            .entries
            .iter()
            .filter(|e| matches!(e.state, State::Applied { .. } | State::InBaseline { .. }))
            .map(|e| e.version)
            .max();
        let mut line = format!(
            "at version {}, {} pending",
            show(at),
            count(|s| matches!(s, State::Pending))
        );
        for (word, n) in [
            ("dirty", count(|s| matches!(s, State::Dirty))),
            ("edited", count(|s| matches!(s, State::Edited { .. }))),
            ("unknown", count(|s| matches!(s, State::Unknown))),
            (
                "in progress",
                count(|s| matches!(s, State::InProgress { .. })),
            ),
        ] {
            if n > 0 {
                line.push_str(&format!(", {n} {word}"));
            }
        }
        if !self.invalid_indexes.is_empty() {
            line.push_str(&format!(
                ", {} INVALID index(es)",
                self.invalid_indexes.len()
            ));
        }
        line
    }
}

impl TenantSummary for VerifyReport {
    fn state(&self) -> &'static str {
        if self.is_clean() {
            "clean"
        } else {
            "drift"
        }
    }

    fn summary(&self) -> String {
        // Pending versions are not drift, but they show a tenant that a
        // failed walk left behind.
        let pending = if self.pending.is_empty() {
            String::new()
        } else {
            format!(", {} pending", self.pending.len())
        };
        let version = show(self.version);
        match self.errors().next() {
            None => format!("clean at version {version}{pending}"),
            Some(first) => format!(
                "{} finding(s) at version {version}{pending}, first: {first}",
                self.errors().count()
            ),
        }
    }
}

impl<T: TenantSummary> TenantOutcome<T> {
    /// The tenant's state: its report's, or `failed`, or `not started`.
    pub fn state(&self) -> &'static str {
        match &self.result {
            TenantResult::Done(report) => report.state(),
            TenantResult::Failed(_) => "failed",
            TenantResult::NotStarted => "not started",
        }
    }
}

impl<T: TenantSummary> EachReport<T> {
    /// How many tenants are in each state, in the order the states first
    /// appear, `failed` and `not started` last.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for state in self
            .tenants
            .iter()
            .map(TenantOutcome::state)
            .filter(|s| !matches!(*s, "failed" | "not started"))
            .chain(["failed", "not started"])
        {
            if !counts.iter().any(|(s, _)| *s == state) {
                counts.push((state, 0));
            }
        }
        for tenant in &self.tenants {
            if let Some(count) = counts.iter_mut().find(|(s, _)| *s == tenant.state()) {
                count.1 += 1;
            }
        }
        counts
    }
}

impl<T: TenantSummary> fmt::Display for EachReport<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .tenants
            .iter()
            .map(|t| t.tenant.len())
            .max()
            .unwrap_or(0);
        for tenant in &self.tenants {
            let line = match &tenant.result {
                TenantResult::Done(report) => {
                    format!("{} ({:.1?})", report.summary(), tenant.elapsed)
                }
                TenantResult::Failed(error) => format!("FAILED: {error}"),
                TenantResult::NotStarted => "not started".to_owned(),
            };
            writeln!(f, "{:<width$}  {line}", tenant.tenant)?;
        }
        let counts: Vec<String> = self
            .counts()
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        write!(
            f,
            "{} tenant(s) in {:.1?}: {}",
            self.tenants.len(),
            self.elapsed,
            counts.join(", ")
        )
    }
}

impl<T: TenantSummary + Serialize> Serialize for TenantOutcome<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut outcome = serializer.serialize_struct("TenantOutcome", 4)?;
        outcome.serialize_field("tenant", &self.tenant)?;
        outcome.serialize_field("state", self.state())?;
        outcome.serialize_field(
            "elapsed_ms",
            &(self.elapsed.as_millis().min(u64::MAX as u128) as u64),
        )?;
        match &self.result {
            TenantResult::Done(report) => outcome.serialize_field("report", report)?,
            TenantResult::Failed(error) => outcome.serialize_field("error", &error.to_string())?,
            TenantResult::NotStarted => outcome.skip_field("report")?,
        }
        outcome.end()
    }
}

impl<T: TenantSummary + Serialize> Serialize for EachReport<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let counts: serde_json::Map<String, serde_json::Value> = self
            .counts()
            .into_iter()
            .map(|(state, n)| (state.to_owned(), n.into()))
            .collect();
        let mut report = serializer.serialize_struct("EachReport", 3)?;
        report.serialize_field("tenants", &self.tenants)?;
        report.serialize_field("counts", &counts)?;
        report.serialize_field(
            "elapsed_ms",
            &(self.elapsed.as_millis().min(u64::MAX as u128) as u64),
        )?;
        report.end()
    }
}
