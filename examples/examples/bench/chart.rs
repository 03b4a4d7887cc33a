//! BENCHMARKS.md's picture: fresh-apply time against the number of
//! migrations, dbprep next to `psql -1 -f`, as an SVG drawn here (log
//! scales on both axes: N goes 10, 100, 1,000).

use std::fmt::Write as _;
use std::time::Duration;

/// One N and the medians measured at it.
pub struct Point {
    pub n: usize,
    pub dbprep: Duration,
    pub psql: Duration,
}

/// Which of a point's times a line shows.
type Measure = fn(&Point) -> Duration;

/// The chart's file name, beside BENCHMARKS.md.
pub const FILE_NAME: &str = "BENCHMARKS-fresh-apply.svg";

/// BENCHMARKS.md's line that shows the chart.
pub fn link() -> String {
    format!("![Fresh apply time against the number of migrations, dbprep and psql -1 -f, log scales]({FILE_NAME})\n\n")
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

/// The SVG of `points` (at least two, in increasing N).
pub fn svg(points: &[Point]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let values = points.iter().flat_map(|p| [ms(p.dbprep), ms(p.psql)]);
    let (low, high) = values.fold((f64::MAX, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // Whole decades around the values.
    let (y_min, y_max) = (
        10f64.powf(low.log10().floor()),
        10f64.powf(high.log10().ceil()),
    );
    let (n_min, n_max) = (points[0].n as f64, points[points.len() - 1].n as f64);
    let x = |n: f64| {
        LEFT + (n.log10() - n_min.log10()) / (n_max.log10() - n_min.log10())
            * (WIDTH - LEFT - RIGHT)
    };
    let y = |v: f64| {
        TOP + (y_max.log10() - v.log10()) / (y_max.log10() - y_min.log10())
            * (HEIGHT - TOP - BOTTOM)
    };

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(out, "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>");
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">Fresh apply of N generated migrations (median, ms, log scales)</text>"
    );
    // Horizontal grid: 1, 2 and 5 of each decade.
    let mut decade = y_min;
    while decade < y_max * 1.001 {
        for step in [1.0, 2.0, 5.0] {
            let v = decade * step;
            if v > y_max * 1.001 {
                break;
            }
            let at = y(v);
            let _ = writeln!(
                out,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{at:.1}\" y2=\"{at:.1}\" stroke=\"#d0d7de\" stroke-width=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#57606a\">{}</text>",
                WIDTH - RIGHT,
                if step == 1.0 { 1.0 } else { 0.5 },
                LEFT - 6.0,
                at + 4.0,
                label(v)
            );
        }
        decade *= 10.0;
    }
    for p in points {
        let at = x(p.n as f64);
        let _ = writeln!(
            out,
            "<line x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#d0d7de\"/>\
             <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">{}</text>",
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0,
            p.n
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#57606a\">migrations (N)</text>",
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        HEIGHT - 12.0
    );
    let series: [(&str, &str, Measure); 2] = [
        ("dbprep", "#0969da", |p| p.dbprep),
        ("psql -1 -f", "#9a6700", |p| p.psql),
    ];
    for (row, (name, colour, value)) in series.iter().enumerate() {
        let line: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.n as f64), y(ms(value(p)))))
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\"/>",
            line.join(" ")
        );
        for p in points {
            let (px, py) = (x(p.n as f64), y(ms(value(p))));
            // dbprep's labels above its points, psql's below.
            let dy = if row == 0 { -9.0 } else { 17.0 };
            let _ = writeln!(
                out,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{colour}\"/>\
                 <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>",
                py + dy,
                label(ms(value(p)))
            );
        }
        let ly = TOP + 20.0 + row as f64 * 22.0;
        let lx = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            out,
            "<line x1=\"{lx}\" x2=\"{:.1}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{name}</text>",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// A time in ms as a label: whole numbers, one decimal below 10.
fn label(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{:.0}", ms)
    }
}
