//! Haven's reports, pure: the termly governor pack and the weekly DSL digest
//! as typed models ([`model`]), turned into a document of headings,
//! paragraphs, key figures, tables and charts ([`doc`], [`pack`]), which is
//! rendered to HTML with inline SVG charts ([`html`]) or to a PDF written by
//! hand ([`pdf`]: PDF 1.4, base-14 Helvetica, vector bars and lines, A4).
//! Both renderers draw a chart from the same geometry ([`chart::layout`]),
//! so what the web page shows and what the governors print are one picture.
//!
//! Nothing here reads a file, the database or the clock: the binary and the
//! web app gather the figures (anonymised counts only) and hand them in.
#![forbid(unsafe_code)]

pub mod chart;
pub mod digest;
pub mod doc;
pub mod html;
pub mod model;
pub mod pack;
pub mod pdf;

pub use chart::{Chart, Colour, Kind, Series};
pub use doc::{Block, Doc, Table};
pub use model::{FourC, GovernorPack};
