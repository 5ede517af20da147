//! Scoring against a labelled set, as `../shared/data/eval/README.md` says:
//! recall over rows labelled C; false alarms over benign rows; rows labelled
//! with other categories are neither.

use std::collections::BTreeMap;
use std::fmt;

use crate::classify::Classifier;
use crate::concern::Concern;

/// One labelled row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The text.
    pub text: String,
    /// Its categories of concern (empty: benign).
    pub labels: Vec<Concern>,
    /// A benign text that mentions sensitive words.
    pub hard_negative: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    tp: u32,
    fn_: u32,
    fp: u32,
}

/// The figures.
#[derive(Debug, Default, Clone)]
pub struct Report {
    tallies: BTreeMap<Concern, Tally>,
    benign: u32,
    benign_any: u32,
    benign_l3: u32,
    hard: u32,
    hard_any: u32,
    hard_l3: u32,
}

impl Report {
    /// Scores `classifier` on `rows`.
    pub fn of(classifier: &Classifier, rows: &[Row]) -> Self {
        let mut r = Self::default();
        for row in rows {
            let c = classifier.classify(&row.text);
            let predicted: Vec<Concern> = c.categories.iter().map(|f| f.category).collect();
            if row.labels.is_empty() {
                r.benign += 1;
                r.benign_any += u32::from(!predicted.is_empty());
                r.benign_l3 += u32::from(c.level.is_some_and(|l| l >= 3));
                if row.hard_negative {
                    r.hard += 1;
                    r.hard_any += u32::from(!predicted.is_empty());
                    r.hard_l3 += u32::from(c.level.is_some_and(|l| l >= 3));
                }
                for p in &predicted {
                    r.tallies.entry(*p).or_default().fp += 1;
                }
            }
            for l in &row.labels {
                let t = r.tallies.entry(*l).or_default();
                if predicted.contains(l) {
                    t.tp += 1;
                } else {
                    t.fn_ += 1;
                }
            }
        }
        r
    }

    /// Adds another report's counts (cross-validation folds).
    pub fn add(&mut self, o: &Self) {
        for (c, t) in &o.tallies {
            let e = self.tallies.entry(*c).or_default();
            e.tp += t.tp;
            e.fn_ += t.fn_;
            e.fp += t.fp;
        }
        self.benign += o.benign;
        self.benign_any += o.benign_any;
        self.benign_l3 += o.benign_l3;
        self.hard += o.hard;
        self.hard_any += o.hard_any;
        self.hard_l3 += o.hard_l3;
    }
}

fn pct(a: u32, b: u32) -> f64 {
    if b == 0 { 0.0 } else { 100.0 * f64::from(a) / f64::from(b) }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| category | rows | recall | precision | F1 | benign flagged |")?;
        writeln!(f, "|---|---|---|---|---|---|")?;
        for c in Concern::ALL {
            let t = self.tallies.get(&c).copied().unwrap_or_default();
            let rows = t.tp + t.fn_;
            if rows == 0 && t.fp == 0 {
                continue;
            }
            let recall = if rows == 0 { f64::NAN } else { f64::from(t.tp) / f64::from(rows) };
            let precision = if t.tp + t.fp == 0 { f64::NAN } else { f64::from(t.tp) / f64::from(t.tp + t.fp) };
            let f1 = 2.0 * precision * recall / (precision + recall);
            writeln!(f, "| {} | {rows} | {recall:.3} | {precision:.3} | {f1:.3} | {:.2}% |", c.name(), pct(t.fp, self.benign))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "benign texts with any category: {}/{} ({:.2}%), at level 3 or above: {} ({:.2}%)",
            self.benign_any,
            self.benign,
            pct(self.benign_any, self.benign),
            self.benign_l3,
            pct(self.benign_l3, self.benign)
        )?;
        write!(
            f,
            "hard negatives with any category: {}/{} ({:.2}%), at level 3 or above: {} ({:.2}%)",
            self.hard_any,
            self.hard,
            pct(self.hard_any, self.hard),
            self.hard_l3,
            pct(self.hard_l3, self.hard)
        )
    }
}
