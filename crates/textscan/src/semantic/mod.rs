//! The semantic stage: what a text means, not which words it has.
//!
//! A static sentence embedding distilled from all-MiniLM-L6-v2
//! ([`Encoder`], `semantic/static.bin`) turns a text into a vector; a head
//! ([`Head`], `semantic/head.bin`) trained on banks of example statements
//! per kind of concern and of their everyday look-alikes ([`Bank`]) gives
//! each kind a probability; the nearest example names what the text was
//! close to. A DSL's own example sentences ([`crate::Example`]) are read
//! first, and a trust can retrain the head from its own closed alerts
//! ([`Semantic::retrain`]). Pure: no I/O, no clock.

mod bank;
mod encoder;
mod head;
mod wordpiece;

use std::sync::{Arc, OnceLock};

pub use bank::{Bank, BankError, Facet, OTHER};
pub use encoder::{Encoder, EncoderError};
pub use head::{Head, HeadError};

use crate::concern::Concern;
pub(crate) use encoder::dot;
use head::Sample;

const STATIC: &[u8] = include_bytes!("../../semantic/static.bin");
const HEAD: &[u8] = include_bytes!("../../semantic/head.bin");
const BACKGROUND: &[u8] = include_bytes!("../../semantic/background.bin");

/// What the stage read in one text: the most likely kind of concern.
#[derive(Debug, Clone, PartialEq)]
pub struct Closeness {
    /// The kind ("suicide-plan").
    pub kind: String,
    /// Its category of concern.
    pub concern: Concern,
    /// Further categories it also is.
    pub also: Vec<Concern>,
    /// The level the kind carries when the stage is sure.
    pub level: u8,
    /// The head's probability for the kind.
    pub probability: f32,
    /// What the text was close to (the nearest facet's phrase).
    pub close_to: String,
    /// How close it was to that facet's nearest example (cosine).
    pub similarity: f32,
}

/// A row a trust teaches the head with: a closed alert's text and the
/// DSL's verdict, or a DSL's example sentence.
#[derive(Debug, Clone)]
pub struct TrainRow {
    /// The text.
    pub text: String,
    /// Its category, `None` when it is not a concern.
    pub concern: Option<Concern>,
    /// The level the DSL gave it.
    pub level: u8,
}

/// How a head does on rows a DSL has judged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Real concerns.
    pub concerns: usize,
    /// Of those, raised in the right category at level 2 or above.
    pub caught: usize,
    /// Not concerns.
    pub not_concerns: usize,
    /// Of those, raised at level 3 or above.
    pub raised: usize,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        write!(
            f,
            "real concerns caught {}/{} ({:.3}); not-a-concern raised at level 3+ {}/{} ({:.3})",
            self.caught,
            self.concerns,
            rate(self.caught, self.concerns),
            self.raised,
            self.not_concerns,
            rate(self.raised, self.not_concerns)
        )
    }
}

/// The stage, ready to read.
pub struct Semantic {
    encoder: Arc<Encoder>,
    bank: Arc<Bank>,
    /// Each bank example's vector and its facet.
    examples: Arc<Vec<(usize, Vec<f32>)>>,
    /// Vectors of licensed ordinary texts the shipped head learned "other"
    /// from (texts not shipped, only their vectors), for retraining.
    background: Arc<Vec<Vec<f32>>>,
    head: Arc<Head>,
    /// For each head class, its facets' indices.
    class_facets: Vec<Vec<usize>>,
}

/// Below this probability a kind is not reported.
pub const REPORT_AT: f32 = 0.6;

impl Semantic {
    /// The shipped stage (one per process).
    pub fn shipped_shared() -> Arc<Self> {
        static SHARED: OnceLock<Arc<Semantic>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let encoder = Arc::new(Encoder::parse(STATIC).expect("shipped embedding parses (tested)"));
                let head = Head::parse(HEAD).expect("shipped head parses (tested)");
                let background = read_vectors(BACKGROUND, encoder.dims());
                Arc::new(Self::new(encoder, Arc::new(Bank::shipped()), Arc::new(background), head))
            })
            .clone()
    }

    /// A stage from its parts.
    pub fn new(encoder: Arc<Encoder>, bank: Arc<Bank>, background: Arc<Vec<Vec<f32>>>, head: Head) -> Self {
        let examples: Vec<(usize, Vec<f32>)> =
            bank.facets.iter().enumerate().flat_map(|(i, f)| f.examples.iter().map(move |e| (i, e))).map(|(i, e)| (i, encoder.embed(e))).collect();
        let mut s = Self { encoder, bank, examples: Arc::new(examples), background, head: Arc::new(head), class_facets: Vec::new() };
        s.index_classes();
        s
    }

    fn index_classes(&mut self) {
        self.class_facets =
            self.head.classes.iter().map(|c| self.bank.facets.iter().enumerate().filter(|(_, f)| &f.kind == c).map(|(i, _)| i).collect()).collect();
    }

    /// The same stage with another head (a trust's own, retrained).
    pub fn with_head(&self, head: Head) -> Result<Self, HeadError> {
        if head.dims != self.encoder.dims() {
            return Err(HeadError::Dims { expected: self.encoder.dims(), found: head.dims });
        }
        let mut s = Self {
            encoder: self.encoder.clone(),
            bank: self.bank.clone(),
            examples: self.examples.clone(),
            background: self.background.clone(),
            head: Arc::new(head),
            class_facets: Vec::new(),
        };
        s.index_classes();
        Ok(s)
    }

    /// The embedding.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The head in force.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The most likely kind of concern in `text`, if the head gives it at
    /// least [`REPORT_AT`].
    pub fn read(&self, text: &str) -> Option<Closeness> {
        let v = self.encoder.embed(text);
        self.read_vector(&v)
    }

    pub(crate) fn read_vector(&self, v: &[f32]) -> Option<Closeness> {
        if v.iter().all(|x| *x == 0.0) {
            return None;
        }
        let p = self.head.probabilities(v);
        let (class, &prob) = p.iter().enumerate().filter(|(c, _)| self.concern_of(*c).is_some()).max_by(|a, b| a.1.total_cmp(b.1))?;
        if prob < REPORT_AT {
            return None;
        }
        let facets = &self.class_facets[class];
        let first = &self.bank.facets[*facets.first()?];
        let (facet, similarity) = self
            .examples
            .iter()
            .filter(|(f, _)| facets.contains(f))
            .map(|(f, e)| (*f, dot(v, e)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((facets[0], 0.0));
        let facet = &self.bank.facets[facet];
        Some(Closeness {
            kind: first.kind.clone(),
            concern: first.concern?,
            also: first.also.clone(),
            level: first.level,
            probability: prob,
            close_to: facet.close_to.clone(),
            similarity,
        })
    }

    /// The category of a head class, if it is a kind of concern.
    fn concern_of(&self, class: usize) -> Option<Concern> {
        self.class_facets.get(class)?.first().and_then(|f| self.bank.facets[*f].concern)
    }

    /// Trains a head on the banks, the shipped background and `extra`
    /// (counted three times over: a trust's own judgement weighs more than
    /// an example written elsewhere).
    pub fn retrain(&self, extra: &[TrainRow]) -> Head {
        let extra: Vec<(Vec<f32>, usize)> = extra.iter().map(|r| (self.encoder.embed(&r.text), self.class_for(r))).collect();
        self.train_on(&extra)
    }

    fn train_on(&self, extra: &[(Vec<f32>, usize)]) -> Head {
        let classes = self.bank.kinds();
        let index = |k: &str| classes.iter().position(|c| c == k).expect("a bank kind");
        let other = classes.len() - 1;
        let mut rows: Vec<Sample<'_>> = self.examples.iter().map(|(f, x)| Sample { x, class: index(&self.bank.facets[*f].kind), weight: 1.0 }).collect();
        rows.extend(self.background.iter().map(|x| Sample { x, class: other, weight: 1.0 }));
        rows.extend(extra.iter().filter(|(x, _)| x.iter().any(|v| *v != 0.0)).map(|(x, c)| Sample { x, class: *c, weight: 3.0 }));
        Head::train(self.encoder.dims(), classes, &rows)
    }

    /// The head class a judged row teaches: "other" when not a concern; for
    /// a concern, the kind of that category the head in force finds most
    /// likely (the DSL judged the category, not the kind).
    fn class_for(&self, r: &TrainRow) -> usize {
        let other = self.head.classes.len() - 1;
        let Some(concern) = r.concern else { return other };
        let v = self.encoder.embed(&r.text);
        let p = self.head.probabilities(&v);
        (0..self.head.classes.len())
            .filter(|c| self.concern_of(*c) == Some(concern) || self.class_facets[*c].iter().any(|f| self.bank.facets[*f].also.contains(&concern)))
            .max_by(|a, b| p[*a].total_cmp(&p[*b]))
            .unwrap_or(other)
    }

    /// How `head` (the one in force when `None`) does on judged rows.
    pub fn score(&self, head: Option<&Head>, rows: &[TrainRow]) -> Figures {
        let stage;
        let s = match head {
            Some(h) => {
                stage = self.with_head(h.clone());
                match &stage {
                    Ok(s) => s,
                    Err(_) => return Figures::default(),
                }
            }
            None => self,
        };
        let mut f = Figures::default();
        for r in rows {
            let c = s.read(&r.text);
            let level = c.as_ref().map(|c| level_for(c.level, c.probability));
            match r.concern {
                Some(want) => {
                    f.concerns += 1;
                    f.caught += usize::from(c.as_ref().is_some_and(|c| (c.concern == want || c.also.contains(&want)) && level.unwrap_or(0) >= 2));
                }
                None => {
                    f.not_concerns += 1;
                    f.raised += usize::from(level.unwrap_or(0) >= 3);
                }
            }
        }
        f
    }

    /// The figures a head retrained on all but one of `folds` parts of
    /// `rows` gets on the part it never saw, summed over the parts.
    pub fn cross_validate(&self, rows: &[TrainRow], folds: usize) -> Figures {
        let folds = folds.max(2);
        let classes: Vec<(Vec<f32>, usize)> = rows.iter().map(|r| (self.encoder.embed(&r.text), self.class_for(r))).collect();
        let mut total = Figures::default();
        for k in 0..folds {
            let train: Vec<(Vec<f32>, usize)> = classes.iter().enumerate().filter(|(i, _)| i % folds != k).map(|(_, r)| r.clone()).collect();
            let held: Vec<TrainRow> = rows.iter().enumerate().filter(|(i, _)| i % folds == k).map(|(_, r)| r.clone()).collect();
            let f = self.score(Some(&self.train_on(&train)), &held);
            total.concerns += f.concerns;
            total.caught += f.caught;
            total.not_concerns += f.not_concerns;
            total.raised += f.raised;
        }
        total
    }

    /// Trains the shipped head from the banks and the vectors of licensed
    /// ordinary texts (`haven-bench train-semantic`).
    pub fn train_shipped(encoder: Arc<Encoder>, bank: Arc<Bank>, ordinary: &[String]) -> (Head, Vec<Vec<f32>>) {
        let background: Vec<Vec<f32>> = ordinary.iter().map(|t| encoder.embed(t)).filter(|v| v.iter().any(|x| *x != 0.0)).collect();
        let placeholder = Head {
            dims: encoder.dims(),
            classes: bank.kinds(),
            scale: head::SCALE,
            weights: vec![0.0; bank.kinds().len() * encoder.dims()],
            biases: vec![0.0; bank.kinds().len()],
        };
        let s = Self::new(encoder, bank, Arc::new(background), placeholder);
        (s.train_on(&[]), s.background.to_vec())
    }
}

/// The level a kind's finding carries at a probability: the kind's own when
/// the head is sure, one lower when it is fairly sure, and 2 at least (a
/// person looks at it).
pub fn level_for(kind_level: u8, probability: f32) -> u8 {
    if probability >= SURE { kind_level } else { kind_level.saturating_sub(1).max(2) }
}

/// From this probability the stage alone (the rules seeing nothing of that
/// category) reports a kind, at level 2.
pub const ALONE: f32 = 0.8;

/// The fewest words in which the stage alone reports anything.
pub const ALONE_WORDS: usize = 8;

/// From this probability the stage alone gives a kind its level (below
/// it, a finding the rules do not back is level 2 at most: a person sees it,
/// nobody is woken by a guess).
pub const CERTAIN: f32 = 0.95;

/// From this probability the head is sure.
pub const SURE: f32 = 0.75;

/// The background vectors' file: `u32` count, `u32` dims, then rows as the
/// embedding's (`f32` scale, `i8` values).
pub fn write_vectors(rows: &[Vec<f32>]) -> Vec<u8> {
    let dims = rows.first().map_or(0, Vec::len);
    let mut out = Vec::new();
    out.extend((rows.len() as u32).to_le_bytes());
    out.extend((dims as u32).to_le_bytes());
    for r in rows {
        let scale = r.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        let scale = if scale > 0.0 { scale } else { 1.0 };
        out.extend(scale.to_le_bytes());
        out.extend(r.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8 as u8));
    }
    out
}

fn read_vectors(bytes: &[u8], dims: usize) -> Vec<Vec<f32>> {
    let head = |i: usize| bytes.get(i..i + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize);
    let (n, d) = (head(0), head(4));
    if d != dims {
        return Vec::new();
    }
    let row = 4 + d;
    (0..n)
        .filter_map(|i| bytes.get(8 + i * row..8 + (i + 1) * row))
        .map(|r| {
            let s = f32::from_le_bytes(r[..4].try_into().expect("4 bytes"));
            r[4..].iter().map(|b| s * f32::from(*b as i8)).collect()
        })
        .collect()
}
