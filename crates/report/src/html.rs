//! A document as HTML: charts as inline SVG (presentation attributes only,
//! so a strict content security policy shows them), each with a title, a
//! description that reads the figures out, and a table of the same figures.

use std::fmt::Write;

use crate::chart::{self, Anchor, Shape};
use crate::doc::{Block, Doc, Table};

/// Escapes text for HTML (and SVG).
#[must_use]
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

fn f(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() { format!("{}", r as i64) } else { format!("{r}") }
}

/// One chart as an SVG element; `id` makes its title and description referable.
#[must_use]
pub fn svg(c: &chart::Chart, id: &str) -> String {
    let d = chart::layout(c);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {} {}\" width=\"100%\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" font-family=\"Helvetica, Arial, sans-serif\">\
         <title id=\"{id}-t\">{}</title><desc id=\"{id}-d\">{}</desc><rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        f(d.width),
        f(d.height),
        esc(&c.title),
        esc(&c.describe()),
        f(d.width),
        f(d.height)
    );
    for shape in &d.shapes {
        match shape {
            Shape::Rect { x, y, w, h, fill, label } => {
                let _ = write!(
                    s,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}</title></rect>",
                    f(*x),
                    f(*y),
                    f(*w),
                    f(*h),
                    fill.hex(),
                    esc(label)
                );
            }
            Shape::Line { points, stroke, width } => {
                let pts: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", f(*x), f(*y))).collect();
                let _ = write!(s, "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"/>", pts.join(" "), stroke.hex(), f(*width));
            }
            Shape::Text { x, y, size, text, anchor } => {
                let a = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let _ = write!(
                    s,
                    "<text x=\"{}\" y=\"{}\" font-size=\"{}\" text-anchor=\"{a}\" fill=\"{}\">{}</text>",
                    f(*x),
                    f(*y),
                    f(*size),
                    chart::INK.hex(),
                    esc(text)
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

fn table(t: &Table, row_headers: bool) -> String {
    let mut s = format!("<table class=\"report\"><caption>{}</caption><thead><tr>", esc(&t.caption));
    for (i, h) in t.head.iter().enumerate() {
        let class = if t.numeric && i > 0 { " class=\"num\"" } else { "" };
        let _ = write!(s, "<th scope=\"col\"{class}>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        s.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            if i == 0 && row_headers {
                let _ = write!(s, "<th scope=\"row\">{}</th>", esc(cell));
            } else if t.numeric {
                let _ = write!(s, "<td class=\"num\">{}</td>", esc(cell));
            } else {
                let _ = write!(s, "<td>{}</td>", esc(cell));
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// The document's body, without its title: for a page frame that has its own heading.
#[must_use]
pub fn fragment(doc: &Doc) -> String {
    body(doc, true)
}

/// The body for a page frame that labels every `<td>` with its column's
/// name by position (the web app's, for narrow screens): each row's first
/// cell is a `<td>` too, so the labels line up.
#[must_use]
pub fn fragment_for_labelled_frame(doc: &Doc) -> String {
    body(doc, false)
}

fn body(doc: &Doc, row_headers: bool) -> String {
    let mut s = format!("<p class=\"period\"><strong>{}</strong></p>", esc(&doc.subtitle));
    let mut n = 0;
    for b in &doc.blocks {
        match b {
            Block::Heading(h) => {
                let _ = write!(s, "<h2>{}</h2>", esc(h));
            }
            Block::Para(p) => {
                let _ = write!(s, "<p>{}</p>", esc(p));
            }
            Block::Figures(figs) => {
                s.push_str("<dl class=\"figures\">");
                for x in figs {
                    let trend = if x.trend.is_empty() { String::new() } else { format!(" <span class=\"trend\">({})</span>", esc(&x.trend)) };
                    let _ = write!(s, "<div><dt>{}</dt><dd>{}{trend}</dd></div>", esc(&x.label), esc(&x.value));
                }
                s.push_str("</dl>");
            }
            Block::Table(t) => s.push_str(&table(t, row_headers)),
            Block::Chart(c) => {
                n += 1;
                let id = format!("chart{n}");
                let _ = write!(
                    s,
                    "<figure class=\"chart\" id=\"{id}\">{}<figcaption>{}</figcaption>{}</figure>",
                    svg(c, &id),
                    esc(&c.title),
                    table(&c.table(), row_headers)
                );
            }
        }
    }
    s
}

/// A whole HTML file, styles included: what `haven report governor --html` writes.
#[must_use]
pub fn standalone(doc: &Doc) -> String {
    format!(
        "<!doctype html><html lang=\"en-GB\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>\
         body{{font-family:Helvetica,Arial,sans-serif;color:#1b1b1b;max-width:52rem;margin:0 auto;padding:1rem;line-height:1.45}}\
         h1{{font-size:1.6rem}}h2{{font-size:1.25rem;margin-top:2rem;border-bottom:2px solid #24385b}}\
         table{{border-collapse:collapse;margin:.6rem 0 1.2rem;width:100%}}caption{{text-align:left;font-weight:700;padding:.3rem 0}}\
         th,td{{border:1px solid #bbb;padding:.25rem .45rem;text-align:left;vertical-align:top}}td.num,th.num{{text-align:right}}\
         figure{{margin:1rem 0}}figcaption{{font-weight:700}}svg.chart{{max-width:40rem;display:block}}\
         dl.figures{{display:grid;grid-template-columns:repeat(auto-fit,minmax(14rem,1fr));gap:.6rem}}dl.figures div{{border:1px solid #bbb;border-radius:6px;padding:.5rem}}\
         dt{{font-weight:700}}dd{{margin:0;font-size:1.2rem}}.trend{{font-size:.85rem;color:#505a5f}}footer{{margin-top:2rem;color:#505a5f;font-size:.85rem}}\
         @media print{{h2{{break-after:avoid}}figure,table{{break-inside:avoid}}}}\
         </style></head><body><main><h1>{t}</h1>{body}</main><footer>{foot}</footer></body></html>\n",
        t = esc(&doc.title),
        body = fragment(doc),
        foot = esc(&doc.footer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{Chart, Kind, Series};
    use crate::doc::Figure;

    fn doc() -> Doc {
        Doc {
            title: "Pack <A&B>".into(),
            subtitle: "1 Sep 2026 to 18 Dec 2026".into(),
            footer: "foot".into(),
            blocks: vec![
                Block::Heading("Alerts".into()),
                Block::Figures(vec![Figure { label: "Alerts".into(), value: "7".into(), trend: "up 2".into() }]),
                Block::Chart(Chart {
                    title: "By category".into(),
                    kind: Kind::Bars { stacked: true },
                    labels: vec!["Grooming".into(), "Oversharer".into()],
                    series: vec![
                        Series { name: "Level 1".into(), values: vec![1.0, 2.0], colour: chart::LEVELS[0] },
                        Series { name: "Level 5".into(), values: vec![3.0, 0.0], colour: chart::LEVELS[4] },
                    ],
                }),
            ],
        }
    }

    #[test]
    fn charts_are_svg_with_a_title_a_description_and_a_table() {
        let html = standalone(&doc());
        assert!(html.starts_with("<!doctype html>") && html.contains("<title>Pack &lt;A&amp;B&gt;</title>"));
        assert_eq!(html.matches("<svg").count(), 1);
        assert_eq!(html.matches("</svg>").count(), 1);
        assert!(html.contains("role=\"img\" aria-labelledby=\"chart1-t chart1-d\""));
        assert!(html.contains("<desc id=\"chart1-d\">By category. Grooming: Level 1 1, Level 5 3; Oversharer: Level 1 2, Level 5 0.</desc>"));
        // The table beside it: a row per label with the stack's total.
        assert!(html.contains("<th scope=\"row\">Grooming</th><td class=\"num\">1</td><td class=\"num\">3</td><td class=\"num\">4</td>"), "{html}");
        // Three bars (a zero draws none), each with its own words.
        assert_eq!(html.matches("<rect x=").count() - 1 - 2, 3, "one background, two legend keys, three bars");
        assert!(html.contains("<title>Grooming, Level 5: 3</title>"));
        assert!(!html.contains("style=\""), "no inline style attributes: the web app's CSP would drop them");
    }

    #[test]
    fn bars_in_the_svg_are_as_long_as_their_values() {
        let html = fragment(&doc());
        let width = |label: &str| -> f64 {
            let at = html.find(&format!("<title>{label}</title>")).unwrap();
            let rect = &html[html[..at].rfind("<rect").unwrap()..at];
            let w = rect.split("width=\"").nth(1).unwrap().split('"').next().unwrap();
            w.parse().unwrap()
        };
        let (a, b, c) = (width("Grooming, Level 1: 1"), width("Oversharer, Level 1: 2"), width("Grooming, Level 5: 3"));
        assert!((b / a - 2.0).abs() < 0.01 && (c / a - 3.0).abs() < 0.01, "{a} {b} {c}");
    }
}
