//! A document as a PDF, written by hand: PDF 1.4, A4 pages, the base-14
//! Helvetica fonts (so nothing is embedded) in WinAnsi encoding, text laid
//! out with Helvetica's own character widths, charts drawn as vector
//! rectangles and lines with content-stream operators from the same
//! geometry the SVG uses, tables that break across pages with their header
//! repeated, and "Page n of N" at every foot. Streams are left uncompressed:
//! a governor pack is a few tens of kilobytes.

use std::fmt::Write;

use crate::chart::{self, Anchor, Colour, Shape};
use crate::doc::{Block, Doc, Table};

/// A4 in points.
pub const PAGE_W: f64 = 595.28;
/// A4 in points.
pub const PAGE_H: f64 = 841.89;
const MARGIN: f64 = 50.0;
const TOP: f64 = PAGE_H - 56.0;
const BOTTOM: f64 = 56.0;
const CONTENT_W: f64 = PAGE_W - 2.0 * MARGIN;

/// Helvetica's advance widths (thousandths of the font size) for WinAnsi
/// bytes 32 to 126, from Adobe's AFM.
const ASCII_WIDTHS: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, // space to /
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, // 0-9
    278, 278, 584, 584, 584, 556, 1015, // : to @
    667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, // A-Z
    278, 278, 278, 469, 556, 333, // [ to `
    556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, // a-z
    334, 260, 334, 584, // { to ~
];

/// The WinAnsi byte for a character, `?` where Helvetica has none.
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{2026}' => 0x85,
        '\u{2013}' => 0x96,
        '\u{2014}' => 0x97,
        '\u{2018}' => 0x91,
        '\u{2019}' => 0x92,
        '\u{201c}' => 0x93,
        '\u{201d}' => 0x94,
        '\u{2022}' => 0x95,
        '\u{2212}' => b'-',
        '\u{a0}'..='\u{ff}' => c as u8,
        _ => b'?',
    }
}

fn byte_width(b: u8) -> u16 {
    match b {
        32..=126 => ASCII_WIDTHS[usize::from(b - 32)],
        0x85 | 0x97 => 1000,
        0x96 => 556,
        0x91 | 0x92 => 222,
        0x93 | 0x94 => 333,
        0x95 => 350,
        0xa3 => 556,
        0xb7 => 278,
        _ => 556,
    }
}

/// The width of `s` set in Helvetica at `size` points (bold is about 5% wider; see [`bold_width`]).
#[must_use]
pub fn text_width(s: &str, size: f64) -> f64 {
    s.chars().map(|c| f64::from(byte_width(win_ansi(c)))).sum::<f64>() * size / 1000.0
}

/// The width of `s` set in Helvetica-Bold (approximated from Helvetica).
#[must_use]
pub fn bold_width(s: &str, size: f64) -> f64 {
    text_width(s, size) * 1.1
}

/// `s` as a PDF literal string: WinAnsi bytes, with `\`, `(` and `)` escaped.
fn literal(s: &str) -> Vec<u8> {
    let mut out = vec![b'('];
    for c in s.chars() {
        let b = win_ansi(c);
        if matches!(b, b'\\' | b'(' | b')') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b')');
    out
}

fn n(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    if r == r.trunc() { format!("{}", r as i64) } else { format!("{r}") }
}

fn rgb(c: Colour) -> String {
    format!("{} {} {}", n(f64::from(c.0) / 255.0), n(f64::from(c.1) / 255.0), n(f64::from(c.2) / 255.0))
}

const GREY: Colour = Colour(0x50, 0x5a, 0x5f);
const HEAD_FILL: Colour = Colour(0xe8, 0xec, 0xf2);

/// Pages being filled, top to bottom.
struct Pages {
    done: Vec<Vec<u8>>,
    cur: Vec<u8>,
    y: f64,
}

impl Pages {
    fn new() -> Self {
        Self { done: Vec::new(), cur: Vec::new(), y: TOP }
    }

    fn op(&mut self, s: &str) {
        self.cur.extend_from_slice(s.as_bytes());
        self.cur.push(b'\n');
    }

    fn break_page(&mut self) {
        self.done.push(std::mem::take(&mut self.cur));
        self.y = TOP;
    }

    /// Starts a new page unless `h` points still fit on this one.
    fn need(&mut self, h: f64) {
        if self.y - h < BOTTOM && self.y < TOP {
            self.break_page();
        }
    }

    fn text(&mut self, x: f64, y: f64, size: f64, bold: bool, colour: Colour, s: &str) {
        let mut op = format!("BT /{} {} Tf {} rg {} {} Td ", if bold { "F2" } else { "F1" }, n(size), rgb(colour), n(x), n(y)).into_bytes();
        op.extend(literal(s));
        op.extend_from_slice(b" Tj ET");
        self.cur.extend(op);
        self.cur.push(b'\n');
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: Colour) {
        self.op(&format!("{} rg {} {} {} {} re f", rgb(fill), n(x), n(y), n(w), n(h)));
    }

    /// A paragraph wrapped to the content width.
    fn para(&mut self, s: &str, size: f64, bold: bool, colour: Colour) {
        let lead = size * 1.35;
        for line in wrap(s, size, CONTENT_W, bold) {
            self.need(lead);
            self.y -= lead;
            self.text(MARGIN, self.y + size * 0.3, size, bold, colour, &line);
        }
    }
}

/// Words of `s` in lines no wider than `width`.
fn wrap(s: &str, size: f64, width: f64, bold: bool) -> Vec<String> {
    let measure = |t: &str| if bold { bold_width(t, size) } else { text_width(t, size) };
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if measure(&candidate) <= width || line.is_empty() {
            line = candidate;
        } else {
            lines.push(std::mem::take(&mut line));
            line = word.to_string();
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `s` cut with an ellipsis to fit `width`.
fn clip(s: &str, size: f64, width: f64, bold: bool) -> String {
    let measure = |t: &str| if bold { bold_width(t, size) } else { text_width(t, size) };
    if measure(s) <= width {
        return s.to_string();
    }
    let mut out = s.to_string();
    while !out.is_empty() && measure(&format!("{out}\u{2026}")) > width {
        out.pop();
    }
    format!("{out}\u{2026}")
}

fn table(p: &mut Pages, t: &Table) {
    const SIZE: f64 = 8.5;
    const ROW: f64 = 14.0;
    let cols = t.head.len().max(1);
    // Natural widths, then shared out to fill the content width.
    let mut natural = vec![20.0f64; cols];
    for (i, h) in t.head.iter().enumerate() {
        natural[i] = natural[i].max(bold_width(h, SIZE) + 8.0);
    }
    for row in &t.rows {
        for (i, c) in row.iter().enumerate().take(cols) {
            natural[i] = natural[i].max(text_width(c, SIZE) + 8.0);
        }
    }
    let total: f64 = natural.iter().sum();
    let widths: Vec<f64> = if total <= CONTENT_W {
        natural.iter().map(|w| w + (CONTENT_W - total) / cols as f64).collect()
    } else {
        natural.iter().map(|w| w * CONTENT_W / total).collect()
    };
    p.need(ROW * 3.0 + 16.0);
    p.y -= 14.0;
    p.text(MARGIN, p.y + 3.0, 9.0, true, chart::INK, &clip(&t.caption, 9.0, CONTENT_W, true));
    let header = |p: &mut Pages| {
        p.y -= ROW;
        p.rect(MARGIN, p.y, CONTENT_W, ROW, HEAD_FILL);
        let mut x = MARGIN;
        for (i, h) in t.head.iter().enumerate() {
            let h = clip(h, SIZE, widths[i] - 8.0, true);
            // Figures' headings over the figures, on the right.
            let hx = if t.numeric && i > 0 { x + widths[i] - 4.0 - bold_width(&h, SIZE) } else { x + 4.0 };
            p.text(hx, p.y + 4.0, SIZE, true, chart::INK, &h);
            x += widths[i];
        }
    };
    header(p);
    for row in &t.rows {
        if p.y - ROW < BOTTOM {
            p.break_page();
            header(p);
        }
        p.y -= ROW;
        p.op(&format!("{} RG 0.5 w {} {} m {} {} l S", rgb(chart::GRID), n(MARGIN), n(p.y), n(MARGIN + CONTENT_W), n(p.y)));
        let mut x = MARGIN;
        for (i, c) in row.iter().enumerate().take(cols) {
            let cell = clip(c, SIZE, widths[i] - 8.0, i == 0);
            if t.numeric && i > 0 {
                p.text(x + widths[i] - 4.0 - text_width(&cell, SIZE), p.y + 4.0, SIZE, false, chart::INK, &cell);
            } else {
                p.text(x + 4.0, p.y + 4.0, SIZE, i == 0, chart::INK, &cell);
            }
            x += widths[i];
        }
    }
    p.y -= 8.0;
}

fn draw_chart(p: &mut Pages, c: &chart::Chart) {
    let d = chart::layout(c);
    let s = CONTENT_W / d.width;
    let h = d.height * s;
    p.need(h + 22.0);
    p.y -= 16.0;
    p.text(MARGIN, p.y + 3.0, 10.0, true, chart::INK, &clip(&c.title, 10.0, CONTENT_W, true));
    let top = p.y - 4.0;
    let (x0, y0) = (MARGIN, top);
    let at = |x: f64, y: f64| (x0 + x * s, y0 - y * s);
    p.op("q");
    for shape in &d.shapes {
        match shape {
            Shape::Rect { x, y, w, h, fill, .. } => {
                let (px, py) = at(*x, *y + *h);
                p.rect(px, py, w * s, h * s, *fill);
            }
            Shape::Line { points, stroke, width } => {
                let mut op = format!("{} RG {} w 1 j", rgb(*stroke), n(width * s));
                for (i, (x, y)) in points.iter().enumerate() {
                    let (px, py) = at(*x, *y);
                    let _ = write!(op, " {} {} {}", n(px), n(py), if i == 0 { "m" } else { "l" });
                }
                op.push_str(" S");
                p.op(&op);
            }
            Shape::Text { x, y, size, text, anchor } => {
                let size = size * s;
                let w = text_width(text, size);
                let (px, py) = at(*x, *y);
                let px = match anchor {
                    Anchor::Start => px,
                    Anchor::Middle => px - w / 2.0,
                    Anchor::End => px - w,
                };
                p.text(px, py, size, false, chart::INK, text);
            }
        }
    }
    p.op("Q");
    p.y = top - h - 4.0;
    table(p, &c.table());
}

/// The pages' content streams, laid out.
fn lay_out(doc: &Doc) -> Vec<Vec<u8>> {
    let mut p = Pages::new();
    for line in wrap(&doc.title, 18.0, CONTENT_W, true) {
        p.y -= 22.0;
        p.text(MARGIN, p.y, 18.0, true, chart::NOW, &line);
    }
    p.y -= 6.0;
    p.para(&doc.subtitle, 11.0, true, GREY);
    p.y -= 4.0;
    p.op(&format!("{} RG 1.5 w {} {} m {} {} l S", rgb(chart::NOW), n(MARGIN), n(p.y), n(MARGIN + CONTENT_W), n(p.y)));
    for b in &doc.blocks {
        match b {
            Block::Heading(h) => {
                // Never a heading alone at the foot of a page.
                p.need(90.0);
                p.y -= 12.0;
                p.para(h, 14.0, true, chart::NOW);
                p.y -= 2.0;
            }
            Block::Para(t) => {
                p.y -= 4.0;
                p.para(t, 10.0, false, chart::INK);
            }
            Block::Figures(figs) => {
                p.y -= 6.0;
                for f in figs {
                    p.need(28.0);
                    p.y -= 14.0;
                    let label = format!("{}: ", f.label);
                    p.text(MARGIN, p.y, 10.0, true, chart::INK, &label);
                    let at = bold_width(&label, 10.0) + 3.0;
                    p.text(MARGIN + at, p.y, 10.0, false, chart::INK, &clip(&f.value, 10.0, CONTENT_W - at, false));
                    if !f.trend.is_empty() {
                        p.y -= 11.0;
                        p.text(MARGIN + 12.0, p.y, 8.5, false, GREY, &clip(&f.trend, 8.5, CONTENT_W - 12.0, false));
                    }
                }
            }
            Block::Table(t) => table(&mut p, t),
            Block::Chart(c) => draw_chart(&mut p, c),
        }
    }
    p.break_page();
    let total = p.done.len();
    let mut pages = p.done;
    for (i, page) in pages.iter_mut().enumerate() {
        let mut foot = Pages::new();
        let right = format!("Page {} of {total}", i + 1);
        foot.text(MARGIN, 30.0, 7.5, false, GREY, &clip(&doc.footer, 7.5, CONTENT_W - text_width(&right, 7.5) - 12.0, false));
        foot.text(PAGE_W - MARGIN - text_width(&right, 7.5), 30.0, 7.5, false, GREY, &right);
        page.extend(foot.cur);
    }
    pages
}

/// The document as a PDF file.
#[must_use]
pub fn render(doc: &Doc) -> Vec<u8> {
    let pages = lay_out(doc);
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let kids: Vec<String> = (0..pages.len()).map(|i| format!("{} 0 R", 6 + 2 * i)).collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()).into_bytes());
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec());
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>".to_vec());
    let mut info = b"<< /Title ".to_vec();
    info.extend(literal(&doc.title));
    info.extend_from_slice(b" /Producer (Haven) >>");
    objects.push(info);
    for (i, content) in pages.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {} {}] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
                n(PAGE_W),
                n(PAGE_H),
                7 + 2 * i
            )
            .into_bytes(),
        );
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(content);
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).into_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for off in offsets {
        out.extend(format!("{off:010} 00000 n \n").into_bytes());
    }
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).into_bytes());
    out
}

/// What a PDF test needs to know of a file: checks the cross-reference
/// table (every offset lands on its object), every stream's length, and
/// returns the pages' content streams. For tests of this crate and others.
///
/// # Errors
/// A description of the first thing that is wrong.
pub fn check(pdf: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(pdf);
    if !pdf.starts_with(b"%PDF-1.") || !text.trim_end().ends_with("%%EOF") {
        return Err("no PDF header or %%EOF".into());
    }
    let sx = text.rfind("startxref").ok_or("no startxref")?;
    let xref: usize = text[sx + 9..].split_whitespace().next().and_then(|v| v.parse().ok()).ok_or("startxref has no offset")?;
    // The offset is in bytes: read from the bytes.
    if pdf.get(xref..xref + 4) != Some(b"xref") {
        return Err(format!("startxref {xref} does not point at the xref table"));
    }
    let table = String::from_utf8_lossy(&pdf[xref..]);
    let mut lines = table.lines().skip(1);
    let header = lines.next().ok_or("no xref subsection")?;
    let count: usize = header.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or("bad xref subsection")?;
    let mut offsets = Vec::new();
    for (i, line) in lines.take(count).enumerate() {
        if i == 0 {
            continue;
        }
        let off: usize = line.get(..10).and_then(|v| v.parse().ok()).ok_or_else(|| format!("bad xref entry {line:?}"))?;
        let want = format!("{i} 0 obj");
        if pdf.get(off..off + want.len()) != Some(want.as_bytes()) {
            return Err(format!("xref entry {i} points at {off}, not at its object"));
        }
        offsets.push(off);
    }
    // Every stream's /Length is its bytes.
    let mut contents = Vec::new();
    for off in offsets {
        let obj = &pdf[off..];
        let end = find(obj, b"endobj").ok_or("an object without endobj")?;
        let obj = &obj[..end];
        if let Some(s) = find(obj, b"stream\n") {
            let dict = String::from_utf8_lossy(&obj[..s]);
            let len: usize =
                dict.split("/Length ").nth(1).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).ok_or("a stream without /Length")?;
            let body = &obj[s + 7..];
            if body.get(len..len + 10) != Some(b"\nendstream") {
                return Err(format!("a stream's /Length {len} is not its length"));
            }
            contents.push(String::from_utf8_lossy(&body[..len]).into_owned());
        }
    }
    let pages = text.matches("/Type /Page ").count();
    if pages != contents.len() {
        return Err(format!("{pages} pages but {} content streams", contents.len()));
    }
    Ok(contents)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::{Chart, Kind, Series};

    fn long_doc() -> Doc {
        let mut blocks = vec![Block::Heading("Alerts (and more)".into()), Block::Para("A paragraph with a backslash \\ and an em dash \u{2014} in it.".into())];
        blocks.push(Block::Chart(Chart {
            title: "Blocks".into(),
            kind: Kind::Bars { stacked: false },
            labels: vec!["Gambling".into(), "Adult".into()],
            series: vec![Series { name: "This term".into(), values: vec![10.0, 40.0], colour: chart::NOW }],
        }));
        blocks.push(Block::Table(Table {
            caption: "Many rows".into(),
            head: vec!["Row".into(), "Value".into()],
            rows: (0..120).map(|i| vec![format!("row {i}"), i.to_string()]).collect(),
            numeric: true,
        }));
        Doc { title: "Governor pack".into(), subtitle: "1 Sep 2026 to 18 Dec 2026".into(), footer: "Haven".into(), blocks }
    }

    #[test]
    fn the_file_is_well_formed_with_true_offsets_and_lengths() {
        let pdf = render(&long_doc());
        let pages = check(&pdf).unwrap();
        assert!(pages.len() >= 2, "120 table rows need a second page");
        assert!(String::from_utf8_lossy(&pdf).contains("/Count ".to_string().as_str()));
        assert!(pages.iter().all(|p| p.contains(&format!("of {}) Tj", pages.len()))), "every page says Page n of N");
        // The table's header is repeated on the page it continues on.
        assert!(pages[1..].iter().any(|p| p.contains("(Row) Tj") && p.contains("(row 119) Tj")));
        // Escapes and WinAnsi: `\` doubled, the em dash one byte (0x97).
        let raw = &pdf[..];
        assert!(find(raw, b"backslash \\\\ and an em dash \x97 in it.").is_some());
        assert!(find(raw, b"(Alerts \\(and more\\)) Tj").is_some());
        // A broken offset is caught.
        let mut bad = pdf.clone();
        let at = find(&bad, b"2 0 obj").unwrap();
        bad.insert(at, b' ');
        assert!(check(&bad).is_err());
    }

    #[test]
    fn bars_are_filled_rectangles_as_long_as_their_values() {
        let pdf = render(&long_doc());
        let page = &check(&pdf).unwrap()[0];
        let fill = format!("{} rg", rgb(chart::NOW));
        let widths: Vec<f64> = page
            .lines()
            .filter(|l| l.starts_with(&fill) && l.ends_with("re f"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .map(|w| w[w.len() - 4].parse::<f64>().unwrap())
            .collect();
        // The legend key (9 units), then the two bars.
        assert_eq!(widths.len(), 3, "{widths:?}");
        assert!((widths[2] / widths[1] - 4.0).abs() < 0.01, "40 is four times 10: {widths:?}");
    }

    #[test]
    fn widths_and_wrapping() {
        assert!((text_width("A", 10.0) - 6.67).abs() < 1e-9);
        assert!((text_width("iiii", 10.0) - 8.88).abs() < 1e-9);
        let lines = wrap(&"word ".repeat(200), 10.0, CONTENT_W, false);
        assert!(lines.len() > 5 && lines.iter().all(|l| text_width(l, 10.0) <= CONTENT_W));
        assert!(text_width(&clip(&"x".repeat(300), 9.0, 100.0, false), 9.0) <= 100.0);
    }
}
