//! Scoring the probe format (`{"text", "labels", "min_level", "kind"}`): short
//! messages written to a taxonomy of what a DSL must see, and their everyday
//! look-alikes. A disclosure is caught when one of its labels is predicted
//! at its `min_level` or above; a look-alike (no labels) is a false alarm
//! when anything is raised at level 3 or above. Pure: rows and the
//! classifier's answers in, figures out.

use std::collections::BTreeMap;
use std::fmt;

use haven_textscan::{Classification, Concern};
use serde::Serialize;

/// A look-alike raised at this level or above is a false alarm (it would
/// reach a DSL's queue under the default thresholds).
pub(crate) const FALSE_ALARM_LEVEL: u8 = 3;

/// One probe row.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Its kind in the taxonomy (`suicide_plan`, `medication_lookalike`, …).
    pub kind: String,
    /// Its categories of concern; empty for a look-alike.
    pub labels: Vec<Concern>,
    /// The lowest level a DSL would accept.
    pub min_level: u8,
}

/// The figures for one kind.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Kind {
    /// Disclosures of this kind.
    pub positives: u32,
    /// Of them, caught at their `min_level` or above.
    pub caught: u32,
    /// Look-alikes of this kind.
    pub lookalikes: u32,
    /// Of them, raised at level 3 or above.
    pub raised: u32,
    /// The kind's level: the `min_level` most of its disclosures ask for
    /// (the higher on a tie); absent for a kind of look-alikes.
    pub level: Option<u8>,
    #[serde(skip)]
    levels: BTreeMap<u8, u32>,
}

/// n of N and the rate.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct Share {
    pub n: u32,
    pub of: u32,
    pub rate: f64,
}

impl Share {
    fn new(n: u32, of: u32) -> Self {
        Self { n, of, rate: if of == 0 { 0.0 } else { f64::from(n) / f64::from(of) } }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = format!("{}/{}", self.n, self.of);
        write!(f, "{cell:>9}  {:>5.1}%", self.rate * 100.0)
    }
}

/// The probe figures.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Scores {
    /// Per kind, by name.
    pub kinds: BTreeMap<String, Kind>,
    /// Disclosures caught, all kinds.
    pub caught: Share,
    /// Disclosures of the level-5 kinds caught.
    pub caught_level5: Share,
    /// Look-alikes raised at level 3 or above, all kinds.
    pub raised: Share,
}

/// Whether a disclosure was caught: one of its labels at its level or above.
pub(crate) fn caught(row: &Probe, c: &Classification) -> bool {
    c.categories.iter().any(|f| row.labels.contains(&f.category) && f.level >= row.min_level)
}

/// Whether a look-alike was raised: anything at [`FALSE_ALARM_LEVEL`] or above.
pub(crate) fn raised(c: &Classification) -> bool {
    c.level.is_some_and(|l| l >= FALSE_ALARM_LEVEL)
}

impl Scores {
    /// Scores each row against the classifier's answer for its text (in the same order).
    pub(crate) fn of<'a>(rows: impl IntoIterator<Item = (&'a Probe, &'a Classification)>) -> Self {
        let mut s = Self::default();
        for (row, c) in rows {
            let k = s.kinds.entry(row.kind.clone()).or_default();
            if row.labels.is_empty() {
                k.lookalikes += 1;
                k.raised += u32::from(raised(c));
            } else {
                k.positives += 1;
                *k.levels.entry(row.min_level).or_default() += 1;
                k.caught += u32::from(caught(row, c));
            }
        }
        let (mut caught, mut positives, mut caught5, mut positives5, mut raised, mut lookalikes) = (0, 0, 0, 0, 0, 0);
        for k in s.kinds.values_mut() {
            k.level = k.levels.iter().max_by_key(|&(level, n)| (*n, *level)).map(|(l, _)| *l);
            caught += k.caught;
            positives += k.positives;
            if k.level == Some(5) {
                caught5 += k.caught;
                positives5 += k.positives;
            }
            raised += k.raised;
            lookalikes += k.lookalikes;
        }
        s.caught = Share::new(caught, positives);
        s.caught_level5 = Share::new(caught5, positives5);
        s.raised = Share::new(raised, lookalikes);
        s
    }

    /// The level-5 kinds with their catch rates.
    pub(crate) fn level5(&self) -> impl Iterator<Item = (&str, Share)> {
        self.kinds.iter().filter(|(_, k)| k.level == Some(5)).map(|(name, k)| (name.as_str(), Share::new(k.caught, k.positives)))
    }

    /// The whole report as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        let kinds: serde_json::Map<String, serde_json::Value> = self
            .kinds
            .iter()
            .map(|(name, k)| {
                let mut v = serde_json::json!({ "level": k.level });
                if k.positives > 0 {
                    v["caught"] = serde_json::json!(Share::new(k.caught, k.positives));
                }
                if k.lookalikes > 0 {
                    v["raised"] = serde_json::json!(Share::new(k.raised, k.lookalikes));
                }
                (name.clone(), v)
            })
            .collect();
        serde_json::json!({
            "kinds": kinds,
            "caught": self.caught,
            "caught_level5": self.caught_level5,
            "level5_kinds": self.level5().map(|(n, s)| (n.to_string(), s)).collect::<BTreeMap<_, _>>(),
            "lookalikes_raised": self.raised,
            "false_alarm_level": FALSE_ALARM_LEVEL,
        })
    }
}

impl fmt::Display for Scores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.kinds.keys().map(String::len).max().unwrap_or(0).max(24);
        writeln!(f, "{:<width$}  level     caught   rate", "disclosures by kind")?;
        for (name, k) in self.kinds.iter().filter(|(_, k)| k.positives > 0) {
            let level = k.level.map_or(String::new(), |l| l.to_string());
            writeln!(f, "{name:<width$}  {level:>5}  {}", Share::new(k.caught, k.positives))?;
        }
        writeln!(f, "{:<width$}  {:>5}  {}", "overall", "", self.caught)?;
        writeln!(f, "{:<width$}  {:>5}  {}", "level-5 kinds", "5", self.caught_level5)?;
        writeln!(f)?;
        writeln!(f, "{:<width$}  level     raised   rate   (a look-alike raised at level {FALSE_ALARM_LEVEL} or above)", "look-alikes by kind")?;
        for (name, k) in self.kinds.iter().filter(|(_, k)| k.lookalikes > 0) {
            writeln!(f, "{name:<width$}  {:>5}  {}", "", Share::new(k.raised, k.lookalikes))?;
        }
        write!(f, "{:<width$}  {:>5}  {}", "overall", "", self.raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_textscan::Found;

    fn said(found: &[(Concern, u8)]) -> Classification {
        Classification {
            categories: found.iter().map(|&(category, level)| Found { category, level, score: 1.0 }).collect(),
            level: found.iter().map(|f| f.1).max(),
            spans: Vec::new(),
            explanation: String::new(),
        }
    }

    fn probe(kind: &str, labels: &[Concern], min_level: u8) -> Probe {
        Probe { kind: kind.into(), labels: labels.to_vec(), min_level }
    }

    #[test]
    fn a_disclosure_is_caught_at_its_level_in_one_of_its_labels_and_a_lookalike_from_level_three() {
        use Concern::*;
        let rows = [
            (probe("plan", &[VulnerablePerson], 5), said(&[(VulnerablePerson, 5)])),   // caught
            (probe("plan", &[VulnerablePerson], 5), said(&[(VulnerablePerson, 4)])),   // too low
            (probe("plan", &[VulnerablePerson], 5), said(&[(TerrorismExtremism, 5)])), // another label
            (probe("plan", &[VulnerablePerson, BullyingViolence], 4), said(&[(BullyingViolence, 4)])), // one of its labels
            (probe("grooming", &[Grooming], 4), said(&[])),
            (probe("medication", &[], 0), said(&[(VulnerablePerson, 2)])), // logged, not raised
            (probe("medication", &[], 0), said(&[(VulnerablePerson, 3)])), // a false alarm
            (probe("banter", &[], 0), said(&[])),
        ];
        let s = Scores::of(rows.iter().map(|(p, c)| (p, c)));
        let plan = &s.kinds["plan"];
        assert_eq!((plan.caught, plan.positives, plan.level), (2, 4, Some(5)));
        assert_eq!((s.kinds["grooming"].caught, s.kinds["grooming"].level), (0, Some(4)));
        assert_eq!((s.kinds["medication"].raised, s.kinds["medication"].lookalikes, s.kinds["medication"].level), (1, 2, None));
        assert_eq!((s.caught.n, s.caught.of), (2, 5));
        assert_eq!((s.caught_level5.n, s.caught_level5.of), (2, 4), "the level-5 kinds are those most of whose rows ask for 5");
        assert_eq!((s.raised.n, s.raised.of), (1, 3));
        assert!((s.raised.rate - 1.0 / 3.0).abs() < 1e-9);
        let text = s.to_string();
        assert!(text.contains("plan") && text.contains("2/4") && text.contains("50.0%"), "{text}");
        assert!(text.contains("1/2") && text.contains("1/3"), "{text}");
        let json = s.json();
        assert_eq!(json["caught"]["n"], 2);
        assert_eq!(json["kinds"]["medication"]["raised"]["of"], 2);
        assert_eq!(json["level5_kinds"]["plan"]["n"], 2);
        assert!(json["kinds"]["banter"].get("caught").is_none());
    }

    #[test]
    fn nothing_to_score_is_zero_not_a_division_by_zero() {
        let s = Scores::of(std::iter::empty());
        assert_eq!(s.caught.rate, 0.0);
        assert!(s.to_string().contains("overall"));
    }
}
