//! A report as a document: what both renderers lay out.

use crate::chart::Chart;

/// A table: caption, header and rows of text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// What it shows.
    pub caption: String,
    /// Column names.
    pub head: Vec<String>,
    /// Rows, as many cells as `head`.
    pub rows: Vec<Vec<String>>,
    /// Columns after the first are figures (aligned right).
    pub numeric: bool,
}

/// One key figure: "Alerts: 42 (up 6 on the previous period)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// What is counted.
    pub label: String,
    /// The figure.
    pub value: String,
    /// Against the previous period, if compared.
    pub trend: String,
}

/// One part of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A section heading.
    Heading(String),
    /// A paragraph.
    Para(String),
    /// Key figures.
    Figures(Vec<Figure>),
    /// A table.
    Table(Table),
    /// A chart, always followed by its figures as a table.
    Chart(Chart),
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Doc {
    /// The title.
    pub title: String,
    /// Under the title: the period, the scope.
    pub subtitle: String,
    /// A line at the foot of every PDF page.
    pub footer: String,
    /// The body.
    pub blocks: Vec<Block>,
}
