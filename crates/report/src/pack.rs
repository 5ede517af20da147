//! The governor pack as a document: headed by its period, every figure
//! beside the previous period of the same length, every chart followed by
//! its table.

use crate::chart::{self, Chart, Kind, Series};
use crate::doc::{Block, Doc, Figure, Table};
use crate::model::{FourC, GovernorPack, Responses};

/// "up 3 (+25%) on 12", "down 2 (−10%) on 20", "the same as before", "new: none before".
#[must_use]
pub fn trend(now: u64, before: u64) -> String {
    if now == before {
        return format!("the same as the previous period ({before})");
    }
    if before == 0 {
        return "none in the previous period".into();
    }
    let diff = now.abs_diff(before);
    let pct = (diff as f64 * 100.0 / before as f64).round() as u64;
    if now > before { format!("up {diff} (+{pct}%) on {before}") } else { format!("down {diff} (\u{2212}{pct}%) on {before}") }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 { "\u{2013}".into() } else { format!("{}%", (part as f64 * 100.0 / whole as f64).round() as u64) }
}

/// `2026-09-07` as "7 Sep 2026" (`short`: "7 Sep").
#[must_use]
pub fn day(date: &str, short: bool) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let parts: Vec<&str> = date.split('-').collect();
    match (parts.first(), parts.get(1).and_then(|m| m.parse::<usize>().ok()), parts.get(2).and_then(|d| d.parse::<u32>().ok())) {
        (Some(y), Some(m @ 1..=12), Some(d)) => {
            if short {
                format!("{d} {}", MONTHS[m - 1])
            } else {
                format!("{d} {} {y}", MONTHS[m - 1])
            }
        }
        _ => date.to_string(),
    }
}

fn responses_row(label: &str, r: &Responses) -> Vec<String> {
    vec![
        label.to_string(),
        r.with_deadline.to_string(),
        r.on_time.to_string(),
        r.late.to_string(),
        r.overdue.to_string(),
        r.waiting.to_string(),
        pct(r.on_time, r.on_time + r.late + r.overdue),
        r.median_minutes.map_or("\u{2013}".into(), minutes),
    ]
}

fn minutes(m: u64) -> String {
    match m {
        0..=119 => format!("{m} min"),
        120..=2879 => format!("{:.1} h", m as f64 / 60.0),
        _ => format!("{:.1} days", m as f64 / 1440.0),
    }
}

/// The pack as a document.
#[must_use]
pub fn document(p: &GovernorPack) -> Doc {
    let period = format!("{} to {}", day(&p.from, false), day(&p.to, false));
    let previous = format!("{} to {}", day(&p.previous_from, false), day(&p.previous_to, false));
    let mut b = Vec::new();
    b.push(Block::Para(format!(
        "Filtering and monitoring at {} from {period}, compared with the previous period of the same length ({previous}). \
         Anonymised: counts only, with no names and nothing a pupil wrote. Alerts about members of staff are reported to the headteacher and the chair of governors, not here.",
        p.scope
    )));
    let r = &p.responses;
    let acted = |x: &Responses| x.on_time + x.late + x.overdue;
    b.push(Block::Figures(vec![
        Figure { label: "Alerts".into(), value: p.alerts().to_string(), trend: trend(p.alerts(), p.previous_alerts()) },
        Figure {
            label: "Acted on within the deadline".into(),
            value: format!("{} of {} ({})", r.now.on_time, acted(&r.now), pct(r.now.on_time, acted(&r.now))),
            trend: format!("previous period {} of {} ({})", r.previous.on_time, acted(&r.previous), pct(r.previous.on_time, acted(&r.previous))),
        },
        Figure {
            label: "Filtering blocks".into(),
            value: p.blocks.iter().map(|x| x.count).sum::<u64>().to_string(),
            trend: trend(p.blocks.iter().map(|x| x.count).sum(), p.blocks.iter().map(|x| x.previous).sum()),
        },
        Figure {
            label: "Filtering checks run".into(),
            value: format!("{} ({} probes, {} failed)", p.checks.now.runs, p.checks.now.probes, p.checks.now.failed),
            trend: trend(p.checks.now.runs, p.checks.previous.runs),
        },
        Figure {
            label: "Filtering changes and requests".into(),
            value: p.changes.now.total().to_string(),
            trend: trend(p.changes.now.total(), p.changes.previous.total()),
        },
        Figure {
            label: "Incidents raised".into(),
            value: p.incidents.now.opened.to_string(),
            trend: trend(p.incidents.now.opened, p.incidents.previous.opened),
        },
        Figure { label: "Incidents open at the end".into(), value: p.incidents.now.open_at_end.to_string(), trend: String::new() },
    ]));

    // Alerts over time.
    b.push(Block::Heading("Alerts by level over time".into()));
    let weeks: Vec<String> = p.weeks.iter().map(|w| day(&w.start, true)).collect();
    b.push(Block::Chart(Chart {
        title: "Alerts per week by level (week starting)".into(),
        kind: Kind::Columns,
        labels: weeks.clone(),
        series: (0..5)
            .map(|l| Series { name: format!("Level {}", l + 1), values: p.weeks.iter().map(|w| w.by_level[l] as f64).collect(), colour: chart::LEVELS[l] })
            .collect(),
    }));
    b.push(Block::Chart(Chart {
        title: "Alerts per week, this period and the previous one (week 1, 2, …)".into(),
        kind: Kind::Line,
        labels: (1..=p.weeks.len()).map(|i| format!("W{i}")).collect(),
        series: vec![
            Series { name: "This period".into(), values: p.weeks.iter().map(|w| w.by_level.iter().sum::<u64>() as f64).collect(), colour: chart::NOW },
            Series { name: "Previous period".into(), values: p.weeks.iter().map(|w| w.previous as f64).collect(), colour: chart::BEFORE },
        ],
    }));

    b.push(Block::Heading("Alerts by category and level".into()));
    let cats: Vec<_> = p.categories.iter().filter(|c| c.total() > 0 || c.previous > 0).collect();
    if cats.is_empty() {
        b.push(Block::Para("No alerts in this period or the previous one.".into()));
    } else {
        b.push(Block::Chart(Chart {
            title: "Alerts by category and level".into(),
            kind: Kind::Bars { stacked: true },
            labels: cats.iter().map(|c| c.name.clone()).collect(),
            series: (0..5)
                .map(|l| Series { name: format!("Level {}", l + 1), values: cats.iter().map(|c| c.by_level[l] as f64).collect(), colour: chart::LEVELS[l] })
                .collect(),
        }));
        b.push(Block::Table(Table {
            caption: "Each category against the previous period, and its KCSIE area".into(),
            head: vec!["Category".into(), "KCSIE area".into(), "This period".into(), "Previous period".into(), "Trend".into()],
            rows: cats
                .iter()
                .map(|c| {
                    vec![c.name.clone(), FourC::of_concern(&c.name).name().into(), c.total().to_string(), c.previous.to_string(), trend(c.total(), c.previous)]
                })
                .collect(),
            numeric: false,
        }));
    }

    b.push(Block::Heading("KCSIE's four areas of risk".into()));
    b.push(Block::Para(
        "Keeping Children Safe in Education groups online risk as content (what a child sees), contact (who they meet), conduct (how they behave) and commerce (gambling, advertising, scams). \
         Each category of concern is counted under its area; filtering blocks under the area of the blocked site's category."
            .into(),
    ));
    let area_alerts = |f: FourC, prev: bool| -> f64 {
        cats.iter().filter(|c| FourC::of_concern(&c.name) == f).map(|c| if prev { c.previous } else { c.total() }).sum::<u64>() as f64
    };
    let area_blocks = |f: FourC| -> f64 { p.blocks.iter().filter(|x| x.area == Some(f)).map(|x| x.count).sum::<u64>() as f64 };
    b.push(Block::Chart(Chart {
        title: "Alerts and filtering blocks by KCSIE area".into(),
        kind: Kind::Bars { stacked: false },
        labels: FourC::ALL.iter().map(|f| f.name().to_string()).collect(),
        series: vec![
            Series { name: "Alerts this period".into(), values: FourC::ALL.iter().map(|f| area_alerts(*f, false)).collect(), colour: chart::NOW },
            Series { name: "Alerts previous period".into(), values: FourC::ALL.iter().map(|f| area_alerts(*f, true)).collect(), colour: chart::BEFORE },
            Series { name: "Blocks this period".into(), values: FourC::ALL.iter().map(|f| area_blocks(*f)).collect(), colour: chart::LEVELS[2] },
        ],
    }));

    b.push(Block::Heading("Response times against deadlines".into()));
    b.push(Block::Para(
        "Every alert at level 2 or above has a deadline from the school's calendar (level 5 at once, otherwise the same or the next working day). \
         On time: someone acknowledged, triaged, noted or closed it by then."
            .into(),
    ));
    let resp = |x: &Responses| vec![x.on_time as f64, x.late as f64, x.overdue as f64, x.waiting as f64];
    let (now, prev) = (resp(&r.now), resp(&r.previous));
    b.push(Block::Chart(Chart {
        title: "Alerts with a deadline: acted on in time, late, still overdue, not yet due".into(),
        kind: Kind::Bars { stacked: true },
        labels: vec!["This period".into(), "Previous period".into()],
        series: ["On time", "Late", "Overdue, no action", "Not yet due"]
            .iter()
            .zip([chart::GOOD, chart::LEVELS[2], chart::BAD, chart::NEUTRAL])
            .enumerate()
            .map(|(i, (n, c))| Series { name: (*n).into(), values: vec![now[i], prev[i]], colour: c })
            .collect(),
    }));
    b.push(Block::Table(Table {
        caption: "Responses against deadlines".into(),
        head: ["Period", "With a deadline", "On time", "Late", "Overdue", "Not yet due", "On time (of due)", "Median to first action"]
            .map(String::from)
            .to_vec(),
        rows: vec![responses_row("This period", &r.now), responses_row("Previous period", &r.previous)],
        numeric: true,
    }));

    b.push(Block::Heading("Filtering blocks by category".into()));
    b.push(Block::Para(p.blocks_note.clone()));
    let shown: Vec<_> = p.blocks.iter().filter(|x| x.count > 0 || x.previous > 0).take(15).collect();
    if !shown.is_empty() {
        b.push(Block::Chart(Chart {
            title: "Blocked requests by category".into(),
            kind: Kind::Bars { stacked: false },
            labels: shown.iter().map(|x| x.category.clone()).collect(),
            series: vec![
                Series { name: "This period".into(), values: shown.iter().map(|x| x.count as f64).collect(), colour: chart::NOW },
                Series { name: "Previous period".into(), values: shown.iter().map(|x| x.previous as f64).collect(), colour: chart::BEFORE },
            ],
        }));
        b.push(Block::Table(Table {
            caption: "Blocks by category and KCSIE area".into(),
            head: ["Category", "KCSIE area", "This period", "Previous period", "Trend"].map(String::from).to_vec(),
            rows: shown
                .iter()
                .map(|x| {
                    vec![
                        x.category.clone(),
                        x.area.map_or("\u{2013}", FourC::name).into(),
                        x.count.to_string(),
                        x.previous.to_string(),
                        trend(x.count, x.previous),
                    ]
                })
                .collect(),
            numeric: false,
        }));
    }

    b.push(Block::Heading("Filtering checks".into()));
    let c = &p.checks;
    b.push(Block::Para(format!(
        "Checks that the filters block what they should, through DNS and the web proxy (the DfE filtering standards ask for regular checks). {}",
        c.now.last.as_ref().map_or("No check was run in this period.".to_string(), |d| format!("The last was on {}.", day(d, false)))
    )));
    b.push(Block::Table(Table {
        caption: "Filtering checks".into(),
        head: ["Period", "Runs", "Probes", "Passed", "Failed", "Failed with a follow-up"].map(String::from).to_vec(),
        rows: [("This period", &c.now), ("Previous period", &c.previous)]
            .iter()
            .map(|(l, x)| {
                vec![
                    (*l).into(),
                    x.runs.to_string(),
                    x.probes.to_string(),
                    (x.probes - x.failed.min(x.probes)).to_string(),
                    x.failed.to_string(),
                    x.followed_up.to_string(),
                ]
            })
            .collect(),
        numeric: true,
    }));

    b.push(Block::Heading("Change register".into()));
    let ch = &p.changes;
    b.push(Block::Para(format!(
        "Changes to filtering made in Haven and requests for them (lesson unblocks, reports of over- and under-blocking): {} raised in this period ({}); {} in force at its end.",
        ch.now.total(),
        trend(ch.now.total(), ch.previous.total()),
        ch.now.in_force_at_end
    )));
    let mut kinds: Vec<String> = ch.now.by_kind.iter().chain(&ch.previous.by_kind).map(|(k, _)| k.clone()).collect();
    kinds.sort();
    kinds.dedup();
    let of = |v: &[(String, u64)], k: &str| v.iter().find(|(x, _)| x == k).map_or(0, |(_, n)| *n);
    b.push(Block::Table(Table {
        caption: "Changes and requests by kind".into(),
        head: ["Kind", "This period", "Previous period"].map(String::from).to_vec(),
        rows: kinds.iter().map(|k| vec![change_kind(k).into(), of(&ch.now.by_kind, k).to_string(), of(&ch.previous.by_kind, k).to_string()]).collect(),
        numeric: true,
    }));
    if !ch.now.by_state.is_empty() {
        b.push(Block::Table(Table {
            caption: "Where this period's changes and requests stand now".into(),
            head: ["State", "How many"].map(String::from).to_vec(),
            rows: ch.now.by_state.iter().map(|(s, n)| vec![s.clone(), n.to_string()]).collect(),
            numeric: true,
        }));
    }

    b.push(Block::Heading("Acceptable-use agreements".into()));
    let ag: Vec<_> = p.agreements.iter().filter(|a| a.expected > 0).collect();
    if ag.is_empty() {
        b.push(Block::Para("No acceptable-use agreement with a list of people to sign it is in force.".into()));
    } else {
        b.push(Block::Para("Who has accepted the version in force, per audience (the MIS's pupils and staff; guests are not counted).".into()));
        let label = |a: &crate::model::Agreement| {
            if p.trust_wide { format!("{}: {} ({})", a.school, a.audience, a.version) } else { format!("{} ({})", a.audience, a.version) }
        };
        b.push(Block::Chart(Chart {
            title: "Acceptable-use agreement coverage".into(),
            kind: Kind::Bars { stacked: true },
            labels: ag.iter().map(|a| label(a)).collect(),
            series: vec![
                Series { name: "Accepted".into(), values: ag.iter().map(|a| a.signed as f64).collect(), colour: chart::GOOD },
                Series { name: "Not yet".into(), values: ag.iter().map(|a| a.expected.saturating_sub(a.signed) as f64).collect(), colour: chart::NEUTRAL },
            ],
        }));
        b.push(Block::Table(Table {
            caption: "Agreement coverage".into(),
            head: ["Agreement", "Should accept", "Accepted", "Coverage"].map(String::from).to_vec(),
            rows: ag.iter().map(|a| vec![label(a), a.expected.to_string(), a.signed.to_string(), pct(a.signed, a.expected)]).collect(),
            numeric: true,
        }));
    }

    b.push(Block::Heading("Incidents".into()));
    let i = &p.incidents;
    b.push(Block::Para(format!(
        "{} raised and {} closed in this period; {} open at its end. Raised: {}.",
        i.now.opened,
        i.now.closed,
        i.now.open_at_end,
        trend(i.now.opened, i.previous.opened)
    )));
    if !i.now.by_kind.is_empty() {
        b.push(Block::Table(Table {
            caption: "Incidents raised by branch of the response flowchart".into(),
            head: ["Branch", "Raised"].map(String::from).to_vec(),
            rows: i.now.by_kind.iter().map(|(k, n)| vec![k.clone(), n.to_string()]).collect(),
            numeric: true,
        }));
    }

    if p.trust_wide && !p.schools.is_empty() {
        b.push(Block::Heading("Schools".into()));
        b.push(Block::Chart(Chart {
            title: "Alerts per school".into(),
            kind: Kind::Bars { stacked: false },
            labels: p.schools.iter().map(|s| s.name.clone()).collect(),
            series: vec![
                Series { name: "This period".into(), values: p.schools.iter().map(|s| s.alerts as f64).collect(), colour: chart::NOW },
                Series { name: "Previous period".into(), values: p.schools.iter().map(|s| s.previous as f64).collect(), colour: chart::BEFORE },
            ],
        }));
        b.push(Block::Table(Table {
            caption: "Each school".into(),
            head: ["School", "Alerts", "Previous period", "On time", "Open incidents"].map(String::from).to_vec(),
            rows: p
                .schools
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.alerts.to_string(),
                        s.previous.to_string(),
                        format!("{} of {}", s.on_time.0, s.on_time.1),
                        s.open_incidents.to_string(),
                    ]
                })
                .collect(),
            numeric: true,
        }));
    }

    Doc {
        title: format!("Governor pack: online safety — {}", p.scope),
        subtitle: format!("{period} · compared with {previous}"),
        footer: format!("Haven governor pack · {} · {period} · anonymised · made {}", p.scope, p.generated_at.get(..10).unwrap_or(&p.generated_at)),
        blocks: b,
    }
}

fn change_kind(k: &str) -> &str {
    match k {
        "change" => "Change made by staff",
        "lesson" => "Lesson unblock request",
        "pupil" => "Pupil's request from the block page",
        "over-blocking" => "Over-blocking reported",
        "under-blocking" => "Under-blocking reported",
        "topic" => "Lesson topic declared",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trends_say_which_way_and_how_much() {
        assert_eq!(trend(15, 12), "up 3 (+25%) on 12");
        assert_eq!(trend(9, 10), "down 1 (\u{2212}10%) on 10");
        assert_eq!(trend(4, 4), "the same as the previous period (4)");
        assert_eq!(trend(4, 0), "none in the previous period");
        assert_eq!(day("2026-09-07", false), "7 Sep 2026");
        assert_eq!(day("2026-12-25", true), "25 Dec");
    }

    #[test]
    fn four_cs() {
        assert_eq!(FourC::of_concern("Grooming"), FourC::Contact);
        assert_eq!(FourC::of_concern("Bullying/Violence"), FourC::Conduct);
        assert_eq!(FourC::of_concern("Vulnerable person"), FourC::Content);
        assert_eq!(FourC::parse("commerce"), Some(FourC::Commerce));
    }
}
