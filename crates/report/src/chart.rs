//! Charts as data, and their geometry: [`layout`] turns a [`Chart`] into
//! rectangles, lines and text on a canvas (y grows downwards, like SVG), which
//! the HTML renderer writes as SVG and the PDF renderer as content-stream
//! operators. Every bar's length is proportional to its value against one
//! scale that starts at zero.

use crate::doc::Table;

/// An sRGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colour(pub u8, pub u8, pub u8);

impl Colour {
    /// `#rrggbb`.
    #[must_use]
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Dark text.
pub const INK: Colour = Colour(0x1b, 0x1b, 0x1b);
/// Axis and grid lines.
pub const GRID: Colour = Colour(0xc8, 0xc8, 0xc8);

/// The five alert levels' colours, level 1 first: each distinguishable
/// from its neighbours, and every chart has a table and text beside it.
pub const LEVELS: [Colour; 5] =
    [Colour(0x8a, 0x8f, 0x98), Colour(0x1d, 0x70, 0xb8), Colour(0xb5, 0x88, 0x00), Colour(0xd4, 0x35, 0x1c), Colour(0x6b, 0x00, 0x1a)];
/// This period.
pub const NOW: Colour = Colour(0x24, 0x38, 0x5b);
/// The period before.
pub const BEFORE: Colour = Colour(0x9e, 0xb3, 0xd1);
/// Good (on time, signed, passed).
pub const GOOD: Colour = Colour(0x00, 0x70, 0x3c);
/// Bad (late, failed).
pub const BAD: Colour = Colour(0xb0, 0x00, 0x20);
/// Neither (waiting, not yet signed).
pub const NEUTRAL: Colour = Colour(0xb1, 0xb4, 0xb6);

/// How a chart draws its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A row per label, bars to the right; series side by side in a row, or stacked.
    Bars {
        /// Series stacked in one bar.
        stacked: bool,
    },
    /// A column per label (weeks); series stacked.
    Columns,
    /// A line per series over the labels (weeks).
    Line,
}

/// One series of values, one per label.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name (the legend's and the table's column).
    pub name: String,
    /// One value per label.
    pub values: Vec<f64>,
    /// Its colour.
    pub colour: Colour,
}

/// A chart: a title, labels and series.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// What it shows (the figure's caption and the SVG's title).
    pub title: String,
    /// Drawn as.
    pub kind: Kind,
    /// The categories or weeks.
    pub labels: Vec<String>,
    /// The series.
    pub series: Vec<Series>,
}

impl Chart {
    /// The same figures as a table: a row per label, a column per series
    /// (and a total for stacked charts).
    #[must_use]
    pub fn table(&self) -> Table {
        let stacked = matches!(self.kind, Kind::Columns | Kind::Bars { stacked: true }) && self.series.len() > 1;
        let mut head = vec![String::new()];
        head.extend(self.series.iter().map(|s| s.name.clone()));
        if stacked {
            head.push("Total".into());
        }
        let rows = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut row = vec![l.clone()];
                let values: Vec<f64> = self.series.iter().map(|s| s.values.get(i).copied().unwrap_or(0.0)).collect();
                row.extend(values.iter().map(|v| number(*v)));
                if stacked {
                    row.push(number(values.iter().sum()));
                }
                row
            })
            .collect();
        Table { caption: format!("{} (the chart's figures)", self.title), head, rows, numeric: true }
    }

    /// A sentence saying what the chart shows, for screen readers (the SVG's description).
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (i, l) in self.labels.iter().enumerate() {
            let vals: Vec<String> = self.series.iter().map(|s| format!("{} {}", s.name, number(s.values.get(i).copied().unwrap_or(0.0)))).collect();
            parts.push(format!("{l}: {}", vals.join(", ")));
        }
        if parts.is_empty() { format!("{}: nothing to show.", self.title) } else { format!("{}. {}.", self.title, parts.join("; ")) }
    }
}

/// A value as text: whole numbers without decimals.
#[must_use]
pub fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{v:.1}") }
}

/// Where text hangs from its point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Text starts at the point.
    Start,
    /// Text is centred on the point.
    Middle,
    /// Text ends at the point.
    End,
}

/// One thing drawn, in canvas units (y down).
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A filled rectangle: a bar, a legend key.
    Rect {
        /// Left.
        x: f64,
        /// Top.
        y: f64,
        /// Width.
        w: f64,
        /// Height.
        h: f64,
        /// Fill.
        fill: Colour,
        /// What it stands for ("Week of 2 Sep, level 3: 4").
        label: String,
    },
    /// A polyline.
    Line {
        /// Points.
        points: Vec<(f64, f64)>,
        /// Colour.
        stroke: Colour,
        /// Width.
        width: f64,
    },
    /// Text; `y` is the baseline.
    Text {
        /// Anchor point x.
        x: f64,
        /// Baseline y.
        y: f64,
        /// Font size.
        size: f64,
        /// The words.
        text: String,
        /// Alignment.
        anchor: Anchor,
    },
}

/// A chart laid out: its size and what to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawing {
    /// Canvas width.
    pub width: f64,
    /// Canvas height.
    pub height: f64,
    /// Shapes, back to front.
    pub shapes: Vec<Shape>,
    /// The value the full plot length stands for.
    pub scale_max: f64,
    /// The plot area: left, top, width, height.
    pub plot: (f64, f64, f64, f64),
}

/// The canvas width every chart is drawn on.
pub const WIDTH: f64 = 480.0;
const FONT: f64 = 9.0;
const LEGEND: f64 = 18.0;

/// A round number at least `v` (1, 2 or 5 times a power of ten), so axis ticks are whole.
#[must_use]
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p + 1e-9 {
            return (m * p).max(1.0);
        }
    }
    10.0 * p
}

fn totals(c: &Chart, stacked: bool) -> f64 {
    let mut max: f64 = 0.0;
    for i in 0..c.labels.len() {
        let at = |s: &Series| s.values.get(i).copied().unwrap_or(0.0).max(0.0);
        let v = if stacked { c.series.iter().map(at).sum() } else { c.series.iter().map(at).fold(0.0, f64::max) };
        max = max.max(v);
    }
    max
}

/// Lays `c` out on a canvas [`WIDTH`] wide.
#[must_use]
pub fn layout(c: &Chart) -> Drawing {
    match c.kind {
        Kind::Bars { stacked } => bars(c, stacked),
        Kind::Columns => columns(c),
        Kind::Line => line(c),
    }
}

fn legend(c: &Chart, y: f64, shapes: &mut Vec<Shape>) {
    let mut x = 4.0;
    for s in &c.series {
        shapes.push(Shape::Rect { x, y: y - 8.0, w: 9.0, h: 9.0, fill: s.colour, label: s.name.clone() });
        shapes.push(Shape::Text { x: x + 12.0, y, size: FONT, text: s.name.clone(), anchor: Anchor::Start });
        x += 12.0 + crate::pdf::text_width(&s.name, FONT) + 14.0;
    }
}

/// Grid lines and tick labels along the value axis.
fn ticks(max: f64, along_x: bool, plot: (f64, f64, f64, f64), shapes: &mut Vec<Shape>) {
    let (px, py, pw, ph) = plot;
    // As many steps as give whole ticks: 5 → 1, 2, 3…; 20 → 5, 10, 15…
    let steps = [5u32, 4, 2, 1].into_iter().find(|n| (max / f64::from(*n)).fract().abs() < 1e-9).unwrap_or(4);
    for k in 0..=steps {
        let v = max * f64::from(k) / f64::from(steps);
        let label = number(v);
        if along_x {
            let x = px + pw * f64::from(k) / f64::from(steps);
            shapes.push(Shape::Line { points: vec![(x, py), (x, py + ph)], stroke: GRID, width: 0.5 });
            shapes.push(Shape::Text { x, y: py + ph + 11.0, size: FONT - 1.0, text: label, anchor: Anchor::Middle });
        } else {
            let y = py + ph - ph * f64::from(k) / f64::from(steps);
            shapes.push(Shape::Line { points: vec![(px, y), (px + pw, y)], stroke: GRID, width: 0.5 });
            shapes.push(Shape::Text { x: px - 4.0, y: y + 3.0, size: FONT - 1.0, text: label, anchor: Anchor::End });
        }
    }
}

fn bars(c: &Chart, stacked: bool) -> Drawing {
    let label_w = c.labels.iter().map(|l| crate::pdf::text_width(l, FONT)).fold(40.0, f64::max).min(170.0) + 8.0;
    let per_row = if stacked { 1 } else { c.series.len().max(1) };
    let bar_h = 10.0;
    let row_h = bar_h * per_row as f64 + 6.0;
    let top = LEGEND + 6.0;
    let plot = (label_w, top, WIDTH - label_w - 30.0, row_h * c.labels.len().max(1) as f64);
    let max = nice_max(totals(c, stacked));
    let mut shapes = Vec::new();
    legend(c, 12.0, &mut shapes);
    ticks(max, true, plot, &mut shapes);
    let (px, py, pw, _) = plot;
    for (i, l) in c.labels.iter().enumerate() {
        let ry = py + row_h * i as f64 + 3.0;
        shapes.push(Shape::Text { x: px - 6.0, y: ry + row_h / 2.0, size: FONT, text: fit(l, label_w - 7.5), anchor: Anchor::End });
        let mut x = px;
        let mut sum = 0.0;
        for (j, s) in c.series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0.0).max(0.0);
            let w = pw * v / max;
            let y = if stacked { ry } else { ry + bar_h * j as f64 };
            if w > 0.0 {
                shapes.push(Shape::Rect { x: if stacked { x } else { px }, y, w, h: bar_h, fill: s.colour, label: format!("{l}, {}: {}", s.name, number(v)) });
            }
            if stacked {
                x += w;
                sum += v;
            } else {
                shapes.push(Shape::Text { x: px + w + 3.0, y: y + bar_h - 2.0, size: FONT - 1.0, text: number(v), anchor: Anchor::Start });
            }
        }
        if stacked {
            shapes.push(Shape::Text { x: x + 3.0, y: ry + bar_h - 2.0, size: FONT - 1.0, text: number(sum), anchor: Anchor::Start });
        }
    }
    shapes.push(Shape::Line { points: vec![(px, py), (px, py + plot.3)], stroke: INK, width: 0.8 });
    Drawing { width: WIDTH, height: py + plot.3 + 16.0, shapes, scale_max: max, plot }
}

/// Column labels: every one when they fit, else every n-th.
fn label_step(slot: f64) -> usize {
    let need = 34.0;
    if slot >= need { 1 } else { (need / slot).ceil() as usize }
}

fn columns(c: &Chart) -> Drawing {
    let plot = (36.0, LEGEND + 8.0, WIDTH - 46.0, 140.0);
    let max = nice_max(totals(c, true));
    let mut shapes = Vec::new();
    legend(c, 12.0, &mut shapes);
    ticks(max, false, plot, &mut shapes);
    let (px, py, pw, ph) = plot;
    let n = c.labels.len().max(1);
    let slot = pw / n as f64;
    let step = label_step(slot);
    for (i, l) in c.labels.iter().enumerate() {
        let x = px + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        let mut base = py + ph;
        for s in &c.series {
            let v = s.values.get(i).copied().unwrap_or(0.0).max(0.0);
            let h = ph * v / max;
            if h > 0.0 {
                base -= h;
                shapes.push(Shape::Rect { x, y: base, w, h, fill: s.colour, label: format!("{l}, {}: {}", s.name, number(v)) });
            }
        }
        if i % step == 0 {
            shapes.push(Shape::Text { x: x + w / 2.0, y: py + ph + 12.0, size: FONT - 1.0, text: l.clone(), anchor: Anchor::Middle });
        }
    }
    shapes.push(Shape::Line { points: vec![(px, py + ph), (px + pw, py + ph)], stroke: INK, width: 0.8 });
    Drawing { width: WIDTH, height: py + ph + 20.0, shapes, scale_max: max, plot }
}

fn line(c: &Chart) -> Drawing {
    let plot = (36.0, LEGEND + 8.0, WIDTH - 46.0, 120.0);
    let max = nice_max(totals(c, false));
    let mut shapes = Vec::new();
    legend(c, 12.0, &mut shapes);
    ticks(max, false, plot, &mut shapes);
    let (px, py, pw, ph) = plot;
    let n = c.labels.len().max(1);
    let slot = pw / n as f64;
    let step = label_step(slot);
    let x_of = |i: usize| px + slot * i as f64 + slot / 2.0;
    for (i, l) in c.labels.iter().enumerate() {
        if i % step == 0 {
            shapes.push(Shape::Text { x: x_of(i), y: py + ph + 12.0, size: FONT - 1.0, text: l.clone(), anchor: Anchor::Middle });
        }
    }
    for s in &c.series {
        let points: Vec<(f64, f64)> = (0..c.labels.len()).map(|i| (x_of(i), py + ph - ph * s.values.get(i).copied().unwrap_or(0.0).max(0.0) / max)).collect();
        for (i, &(x, y)) in points.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            shapes.push(Shape::Rect { x: x - 2.0, y: y - 2.0, w: 4.0, h: 4.0, fill: s.colour, label: format!("{}, {}: {}", c.labels[i], s.name, number(v)) });
        }
        shapes.push(Shape::Line { points, stroke: s.colour, width: 1.8 });
    }
    shapes.push(Shape::Line { points: vec![(px, py + ph), (px + pw, py + ph)], stroke: INK, width: 0.8 });
    Drawing { width: WIDTH, height: py + ph + 20.0, shapes, scale_max: max, plot }
}

/// `text` cut with an ellipsis to fit `width` at the chart's font size.
fn fit(text: &str, width: f64) -> String {
    if crate::pdf::text_width(text, FONT) <= width {
        return text.to_string();
    }
    let mut out: String = text.to_string();
    while !out.is_empty() && crate::pdf::text_width(&format!("{out}…"), FONT) > width {
        out.pop();
    }
    format!("{}…", out.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rects(d: &Drawing) -> Vec<(f64, f64, f64, f64, String)> {
        d.shapes
            .iter()
            .filter_map(|s| match s {
                Shape::Rect { x, y, w, h, label, .. } if label.contains(", ") => Some((*x, *y, *w, *h, label.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bar_lengths_are_proportional_to_values() {
        let c = Chart {
            title: "Blocks".into(),
            kind: Kind::Bars { stacked: false },
            labels: vec!["Gambling".into(), "Adult".into(), "Games".into()],
            series: vec![Series { name: "This term".into(), values: vec![10.0, 40.0, 0.0], colour: NOW }],
        };
        let d = layout(&c);
        assert_eq!(d.scale_max, 50.0);
        let r = rects(&d);
        assert_eq!(r.len(), 2, "a zero draws no bar: {r:?}");
        let (_, _, w1, _, ref l1) = r[0];
        let (_, _, w2, _, _) = r[1];
        assert!(l1.starts_with("Gambling"));
        assert!((w2 / w1 - 4.0).abs() < 1e-9, "40 is four times 10: {w1} {w2}");
        assert!((w2 - d.plot.2 * 40.0 / 50.0).abs() < 1e-9, "against a scale from zero");
    }

    #[test]
    fn stacked_columns_sum_to_the_week_and_share_a_baseline() {
        let c = Chart {
            title: "Alerts per week".into(),
            kind: Kind::Columns,
            labels: vec!["2 Sep".into(), "9 Sep".into()],
            series: vec![
                Series { name: "Level 1".into(), values: vec![3.0, 1.0], colour: LEVELS[0] },
                Series { name: "Level 4".into(), values: vec![1.0, 0.0], colour: LEVELS[3] },
            ],
        };
        let d = layout(&c);
        assert_eq!(d.scale_max, 5.0);
        let r = rects(&d);
        assert_eq!(r.len(), 3);
        let (_, py, _, ph) = d.plot;
        let base = py + ph;
        // Week one: level 1 from the baseline, level 4 on top of it.
        assert!((r[0].1 + r[0].3 - base).abs() < 1e-9);
        assert!((r[0].3 - ph * 3.0 / 5.0).abs() < 1e-9 && (r[1].3 - ph / 5.0).abs() < 1e-9);
        assert!((r[1].1 + r[1].3 - r[0].1).abs() < 1e-9, "stacked");
        assert!((r[2].3 - ph / 5.0).abs() < 1e-9);
    }

    #[test]
    fn lines_rise_with_their_values_and_tables_repeat_the_figures() {
        let c = Chart {
            title: "Alerts per week".into(),
            kind: Kind::Line,
            labels: vec!["1".into(), "2".into(), "3".into()],
            series: vec![Series { name: "This term".into(), values: vec![0.0, 5.0, 10.0], colour: NOW }],
        };
        let d = layout(&c);
        let line = d.shapes.iter().find_map(|s| match s {
            Shape::Line { points, width, .. } if *width > 1.0 => Some(points.clone()),
            _ => None,
        });
        let p = line.unwrap();
        let (_, py, _, ph) = d.plot;
        assert!((p[0].1 - (py + ph)).abs() < 1e-9 && (p[2].1 - py).abs() < 1e-9, "0 on the axis, 10 at the top: {p:?}");
        assert!(((py + ph - p[1].1) - ph / 2.0).abs() < 1e-9);
        let t = c.table();
        assert_eq!(t.rows[2], vec!["3".to_string(), "10".to_string()]);
        assert!(c.describe().contains("3: This term 10"));
    }

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(11.0), 20.0);
        assert_eq!(nice_max(230.0), 500.0);
        assert_eq!(nice_max(3.0), 5.0);
    }
}
