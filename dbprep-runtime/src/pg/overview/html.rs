//! The overview as one HTML page: inline style, no script, nothing fetched
//! from elsewhere, so that it opens from a file, an e-mail or a CI
//! artifact as it is.

use std::fmt::Write;
use std::time::Duration;

use serde_json::Value;

use super::{FixtureState, Overview};
use crate::pg::report::{State, StatusEntry};
use crate::Policy;

/// The page's style: readable on screen and on paper.
const STYLE: &str = "
:root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bar: #54aeff; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1f2328; margin: 0; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; color: #c9d1d9; }
main { padding: 8px 28px 28px; max-width: 1200px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 16px 0; padding: 12px 16px; }
h2 { font-size: 16px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 4px; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.card.bad { border-color: var(--bad); } .card.bad b { color: var(--bad); }
.card.warn { border-color: var(--warn); } .card.warn b { color: var(--warn); }
.state { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; }
.s-ok { background: var(--ok); } .s-warn { background: var(--warn); } .s-bad { background: var(--bad); } .s-muted { background: var(--muted); }
.bar { height: 10px; background: var(--bar); border-radius: 2px; min-width: 1px; }
.bar-cell { width: 30%; }
.clean { color: var(--ok); font-weight: 600; }
ul.findings { margin: 0; padding-left: 18px; }
ul.findings li.error { color: var(--bad); } ul.findings li.warn { color: var(--warn); }
.tables { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px; }
.table-card { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; overflow-wrap: anywhere; }
.table-card table { table-layout: fixed; }
.fk { color: #0969da; }
.muted { color: var(--muted); }
";

impl Overview {
    /// The overview as one self-contained HTML page.
    ///
    /// ```no_run
    /// # async fn f(pool: deadpool_postgres::Pool, m: &'static dbprep_runtime::Migrations) -> Result<(), Box<dyn std::error::Error>> {
    /// let overview = dbprep_runtime::Migrator::new(m).overview(&pool).await?;
    /// std::fs::write("report.html", overview.to_html())?;
    /// # Ok(()) }
    /// ```
    pub fn to_html(&self) -> String {
        let mut page = String::new();
        let title = format!("dbprep report: {}", self.database);
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            escape(&title)
        );
        let _ = write!(
            page,
            "<header><h1>{}</h1><p>PostgreSQL {} at {} · as {} · history {} · read {}</p></header>\n<main>\n",
            escape(&self.database),
            escape(&self.server_version),
            escape(&self.server),
            escape(&self.user),
            escape(&self.history),
            escape(&self.read_at),
        );
        self.summary(&mut page);
        self.migrations(&mut page);
        self.drift(&mut page);
        self.invalid_indexes(&mut page);
        self.fixtures_section(&mut page);
        self.tables(&mut page);
        page.push_str("</main>\n</body>\n</html>\n");
        page
    }

    fn summary(&self, page: &mut String) {
        let entries = &self.status.entries;
        let count = |pick: fn(&State) -> bool| entries.iter().filter(|e| pick(&e.state)).count();
        let applied = count(|s| matches!(s, State::Applied { .. } | State::InBaseline { .. }));
        let pending = count(|s| matches!(s, State::Pending));
        let version = crate::pg::report::show(self.verify.version);
        let drift = self.verify.findings.len();
        page.push_str("<div class=\"summary\">\n");
        for (label, value, class) in [
            ("version", version, ""),
            ("applied", applied.to_string(), ""),
            (
                "pending",
                pending.to_string(),
                if pending > 0 { "warn" } else { "" },
            ),
            (
                "drift",
                drift.to_string(),
                if self.verify.is_clean() { "" } else { "bad" },
            ),
            (
                "INVALID indexes",
                self.status.invalid_indexes.len().to_string(),
                if self.status.invalid_indexes.is_empty() {
                    ""
                } else {
                    "bad"
                },
            ),
        ] {
            let _ = writeln!(
                page,
                "<div class=\"card {class}\" id=\"summary-{}\"><span class=\"muted\">{label}</span><b>{}</b></div>",
                label.to_lowercase().replace(' ', "-"),
                escape(&value)
            );
        }
        page.push_str("</div>\n");
    }

    fn migrations(&self, page: &mut String) {
        let longest = self
            .status
            .entries
            .iter()
            .filter_map(|e| match &e.state {
                State::Applied { duration, .. } => Some(*duration),
                _ => None,
            })
            .max()
            .unwrap_or_default()
            .max(Duration::from_millis(1));
        page.push_str(
            "<section id=\"migrations\"><h2>Migrations</h2>\n<table>\n\
             <tr><th>version</th><th>name</th><th>state</th><th>applied</th><th>took</th><th class=\"bar-cell\"></th></tr>\n",
        );
        for entry in &self.status.entries {
            let (at, took, bar) = match &entry.state {
                State::Applied { at, duration, .. } => (
                    at.as_str(),
                    format!("{} ms", duration.as_millis()),
                    format!(
                        "<div class=\"bar\" style=\"width: {:.1}%\"></div>",
                        100.0 * duration.as_secs_f64() / longest.as_secs_f64()
                    ),
                ),
                _ => ("", String::new(), String::new()),
            };
            let _ = writeln!(
                page,
                "<tr><td class=\"mono\">{}</td><td title=\"{}\">{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"bar-cell\">{bar}</td></tr>",
                entry.version,
                escape(entry.file.as_deref().unwrap_or("not in this binary")),
                escape(&entry.name),
                state_badge(entry),
                escape(at),
                took,
            );
        }
        page.push_str("</table></section>\n");
    }

    fn drift(&self, page: &mut String) {
        page.push_str("<section id=\"drift\"><h2>Drift</h2>\n");
        if self.verify.findings.is_empty() {
            page.push_str(
                "<p class=\"clean\">No drift: the database is what the migrations made.</p>\n",
            );
        } else {
            page.push_str("<ul class=\"findings\">\n");
            for finding in &self.verify.findings {
                let (class, level) = match finding.policy {
                    Policy::Error => ("error", "error"),
                    Policy::Warn => ("warn", "warning"),
                    Policy::Allow => ("allow", "allowed"),
                };
                let _ = writeln!(
                    page,
                    "<li class=\"{class}\"><b>{level}</b>: <span class=\"mono\">{}</span></li>",
                    escape(&finding.drift.to_string())
                );
            }
            page.push_str("</ul>\n");
        }
        for note in &self.verify.notes {
            let _ = writeln!(page, "<p class=\"muted\">note: {}</p>", escape(note));
        }
        page.push_str("</section>\n");
    }

    fn invalid_indexes(&self, page: &mut String) {
        page.push_str("<section id=\"invalid-indexes\"><h2>INVALID indexes</h2>\n");
        if self.status.invalid_indexes.is_empty() {
            page.push_str("<p class=\"clean\">None.</p>\n");
        } else {
            page.push_str("<p>Their build failed or is still running: written to, never read. <code>repair --drop-invalid-indexes</code> drops them.</p><ul class=\"findings\">\n");
            for index in &self.status.invalid_indexes {
                let _ = writeln!(
                    page,
                    "<li class=\"error mono\">{}</li>",
                    escape(&index.to_string())
                );
            }
            page.push_str("</ul>\n");
        }
        page.push_str("</section>\n");
    }

    fn fixtures_section(&self, page: &mut String) {
        page.push_str("<section id=\"fixtures\"><h2>Fixtures</h2>\n");
        if self.fixtures.is_empty() {
            page.push_str("<p class=\"muted\">No fixture embedded or populated.</p></section>\n");
            return;
        }
        page.push_str("<table><tr><th>name</th><th>state</th><th>populated</th><th>rows</th><th>file</th></tr>\n");
        for fixture in &self.fixtures {
            let (at, rows) = fixture
                .populated
                .as_ref()
                .map_or((String::new(), String::new()), |p| {
                    (p.at.clone(), p.rows.to_string())
                });
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{rows}</td><td class=\"mono\">{}</td></tr>",
                escape(&fixture.name),
                fixture_badge(fixture),
                escape(&at),
                escape(fixture.file.as_deref().unwrap_or("not in this binary")),
            );
        }
        page.push_str("</table></section>\n");
    }

    fn tables(&self, page: &mut String) {
        let empty = serde_json::Map::new();
        let section = |name: &str| {
            self.schema
                .get(name)
                .and_then(Value::as_object)
                .unwrap_or(&empty)
        };
        let (tables, constraints) = (section("tables"), section("constraints"));
        let _ = writeln!(
            page,
            "<section id=\"schema\"><h2>Schema</h2>\n<p class=\"muted\">{} table(s), {} view(s), {} index(es), {} function(s)</p>\n<div class=\"tables\">",
            tables.len(),
            section("views").len(),
            section("indexes").len(),
            section("functions").len(),
        );
        for (name, table) in tables {
            let _ = write!(
                page,
                "<div class=\"table-card\"><h3>{}</h3><table>",
                escape(name)
            );
            for column in table["columns"].as_array().into_iter().flatten() {
                let text = |key: &str| column[key].as_str().unwrap_or_default();
                let mut notes = Vec::new();
                if column["not_null"].as_bool() == Some(true) {
                    notes.push("not null".to_owned());
                }
                if !text("default").is_empty() {
                    notes.push(format!("default {}", text("default")));
                }
                let _ = write!(
                    page,
                    "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"muted\">{}</td></tr>",
                    escape(text("name")),
                    escape(text("type")),
                    escape(&notes.join(", "))
                );
            }
            page.push_str("</table>");
            let prefix = format!("{name}.");
            let of_table = constraints
                .iter()
                .filter_map(|(key, definition)| Some((key.strip_prefix(&prefix)?, definition)));
            for (constraint, definition) in of_table {
                let definition = definition.as_str().unwrap_or_default();
                let class = if definition.starts_with("FOREIGN KEY") {
                    "fk"
                } else {
                    "muted"
                };
                let _ = write!(
                    page,
                    "<div class=\"mono {class}\">{}: {}</div>",
                    escape(constraint),
                    escape(definition)
                );
            }
            page.push_str("</div>\n");
        }
        page.push_str("</div></section>\n");
    }
}

/// A coloured label for a version's state.
fn state_badge(entry: &StatusEntry) -> String {
    let (class, text) = match &entry.state {
        State::Applied { kind, .. } => ("s-ok", kind.as_str().replace("migration", "applied")),
        State::InBaseline { baseline } => ("s-ok", format!("in baseline {baseline}")),
        State::Pending => ("s-warn", "pending".to_owned()),
        State::Unknown => ("s-bad", "unknown".to_owned()),
        State::Edited { .. } => ("s-bad", "edited".to_owned()),
        State::Dirty => ("s-bad", "dirty".to_owned()),
        State::InProgress { .. } => ("s-warn", "in progress".to_owned()),
    };
    format!("<span class=\"state {class}\">{}</span>", escape(&text))
}

/// A coloured label for a fixture's state.
fn fixture_badge(fixture: &FixtureState) -> &'static str {
    match (&fixture.populated, fixture.changed, &fixture.file) {
        (None, _, _) => "<span class=\"state s-muted\">not populated</span>",
        (Some(_), true, _) => "<span class=\"state s-bad\">file changed since</span>",
        (Some(_), false, None) => "<span class=\"state s-warn\">not in this binary</span>",
        (Some(_), false, Some(_)) => "<span class=\"state s-ok\">populated</span>",
    }
}

/// Text as HTML: the five characters that could open markup or close an
/// attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_in_names_is_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
