//! Tables that fit a terminal.

use std::fmt;

use crate::pg::report::{RepeatableState, State, Status};
use crate::pg::store::history::HistoryRow;

/// A table with left-aligned, width-fitted columns.
pub(super) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new<const N: usize>(header: [&str; N]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.to_vec());
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                std::iter::once(&self.header[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let text: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(f, "{}", text.join("  ").trim_end())
        };
        line(f, &self.header)?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

/// The status of every version; with `colour` (a terminal), pending
/// versions in yellow and problems in red. The state is the last column,
/// so colour codes do not upset the alignment.
pub(super) fn status_table(status: &Status, colour: bool) -> Table {
    let mut table = Table::new(["version", "name", "state"]);
    for e in &status.entries {
        let code = match e.state {
            State::Pending | State::InProgress { .. } => "33",
            State::Unknown | State::Edited { .. } | State::Dirty => "31",
            State::Applied { .. } | State::InBaseline { .. } => "",
        };
        table.row([
            e.version.to_string(),
            e.name.clone(),
            paint(colour, code, &e.state),
        ]);
    }
    // Repeatable migrations have no version: `R` stands in its column.
    for r in &status.repeatables {
        let code = match r.state {
            RepeatableState::Pending | RepeatableState::Changed { .. } => "33",
            RepeatableState::Unknown => "31",
            RepeatableState::Applied { .. } => "",
        };
        table.row([
            "R".to_owned(),
            r.name.clone(),
            paint(colour, code, &r.state),
        ]);
    }
    table
}

/// `text` in the terminal colour `code` (none when empty, or without
/// `colour`).
fn paint(colour: bool, code: &str, text: &dyn fmt::Display) -> String {
    if colour && !code.is_empty() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub(super) fn history_table(rows: &[HistoryRow]) -> Table {
    let mut table = Table::new([
        "rank",
        "version",
        "name",
        "kind",
        "applied at",
        "ms",
        "by",
        "ok",
    ]);
    for r in rows {
        table.row([
            r.installed_rank.to_string(),
            r.version.to_string(),
            r.name.clone(),
            r.kind.to_string(),
            r.applied_at.clone(),
            r.execution_ms.to_string(),
            r.applied_by.clone(),
            if r.success {
                "yes".into()
            } else {
                "DIRTY".into()
            },
        ]);
    }
    table
}
