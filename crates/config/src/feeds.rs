//! List feeds `haven serve` refreshes itself: when each source with a `url`
//! is due (times on the trust's wall clock, or every so often), and which
//! entry of the secrets file it downloads with. When a feed is next due is
//! worked out here, purely: the last run and the time are parameters.

use std::path::{Path, PathBuf};

use haven_lists::SourceSpec;
use haven_lists::feed::{Secrets, safe_for_credentials};
use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::Deserialize;

use crate::errors::Problems;
use crate::raw::{RawList, S};

/// Illegal-content lists (the IWF's, CTIRU's) with a `url` and no schedule
/// are refreshed at these times: the IWF updates its list twice a day and
/// asks members to take it as often.
pub const ILLEGAL_DEFAULT_TIMES: [&str; 2] = ["06:00", "18:00"];

/// After a failed refresh the next try comes this soon, doubling with each
/// failure in a row up to [`RETRY_MAX`] (never later than the next scheduled time).
pub const RETRY_FIRST: SignedDuration = SignedDuration::from_mins(5);
/// The longest wait between tries of a failing feed.
pub const RETRY_MAX: SignedDuration = SignedDuration::from_hours(1);

/// The list feeds of a config.
#[derive(Debug, Clone, PartialEq)]
pub struct Feeds {
    /// The trust's time zone (`timezone`), which `refresh` times are on.
    pub timezone: TimeZone,
    /// `[lists] secrets`: the owner-only file of the feeds' credentials.
    pub secrets: Option<PathBuf>,
    /// Every source with a `url`, in config order.
    pub sources: Vec<Feed>,
}

impl Default for Feeds {
    fn default() -> Self {
        Self { timezone: TimeZone::get("Europe/London").unwrap_or(TimeZone::UTC), secrets: None, sources: Vec::new() }
    }
}

/// One source with a `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// The `[[list]]`'s name.
    pub source: String,
    /// When `haven serve` refreshes it (never, when empty: `haven lists update` only).
    pub refresh: Refresh,
    /// The secrets file's entry it downloads with.
    pub credentials: Option<String>,
}

/// When a feed is refreshed: at wall-clock times, every so often, or both
/// (whichever comes first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Times of day on the trust's clock, sorted.
    pub times: Vec<Time>,
    /// An interval since the last run.
    pub every: Option<SignedDuration>,
}

/// What the record says of a feed's runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// When it last ran, whatever came of it.
    pub last_run: Option<Timestamp>,
    /// Failed runs in a row up to the last (0 when the last one worked).
    pub failures: u32,
}

impl Refresh {
    /// Whether `haven serve` refreshes the feed at all.
    pub fn scheduled(&self) -> bool {
        !self.times.is_empty() || self.every.is_some()
    }

    /// When the feed is next due; `None` when it is never refreshed by
    /// schedule. A feed that never ran is due `now`; one whose slot passed
    /// while Haven was down is due at once (the returned time is then not
    /// after `now`); a failing one is tried again sooner ([`retry_after`]).
    /// A last run in the future (the clock was put back) counts as now.
    pub fn next_due(&self, tz: &TimeZone, history: &History, now: Timestamp) -> Option<Timestamp> {
        if !self.scheduled() {
            return None;
        }
        let Some(last) = history.last_run else { return Some(now) };
        let last = last.min(now);
        let mut due: Option<Timestamp> = None;
        let mut sooner = |t: Timestamp| due = Some(due.map_or(t, |d| d.min(t)));
        // The first listed time after the last run: on its day or the next
        // two (a clock change makes one day 23 or 25 hours long).
        let day = last.to_zoned(tz.clone()).date();
        'days: for offset in 0..3 {
            let Ok(date) = day.checked_add(offset.days()) else { break };
            for t in &self.times {
                // A time in a spring-forward gap happens at the first moment after it.
                if let Ok(at) = date.to_datetime(*t).to_zoned(tz.clone()).map(|z| z.timestamp())
                    && at > last
                {
                    sooner(at);
                    break 'days;
                }
            }
        }
        if let Some(every) = self.every
            && let Ok(at) = last.checked_add(every)
        {
            sooner(at);
        }
        if history.failures > 0
            && let Ok(at) = last.checked_add(retry_after(history.failures))
        {
            sooner(at);
        }
        due
    }
}

/// How long after the `failures`-th failure in a row to try again.
pub fn retry_after(failures: u32) -> SignedDuration {
    let doublings = failures.saturating_sub(1).min(8);
    RETRY_FIRST.checked_mul(1 << doublings).unwrap_or(RETRY_MAX).min(RETRY_MAX)
}

/// `[lists]`: defaults for every list feed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFeedDefaults {
    pub(crate) refresh: Option<Vec<S>>,
    pub(crate) refresh_every: Option<S>,
    pub(crate) secrets: Option<S>,
}

/// Checks the feeds' keys (`refresh`, `refresh_every`, `credentials`, and
/// `[lists]`), collecting problems, and reads the secrets file only to
/// check it: its values are not kept.
pub(crate) fn check(p: &mut Problems<'_>, base: &Path, raw: &[RawList], defaults: &RawFeedDefaults, tz: &TimeZone, specs: &[SourceSpec]) -> Feeds {
    let default_refresh = if defaults.refresh.is_some() || defaults.refresh_every.is_some() {
        Some(refresh(p, defaults.refresh.as_deref(), defaults.refresh_every.as_ref()))
    } else {
        None
    };
    let secrets_path = defaults.secrets.as_ref().map(|s| base.join(s.get_ref()));
    let secrets = match (&defaults.secrets, &secrets_path) {
        (Some(key), Some(path)) => match Secrets::load(path) {
            Ok(s) => Some(s),
            Err(e) => {
                p.at(
                    key.span(),
                    e.to_string(),
                    Some("the file holds one table per feed: [iwf] with header = \"Authorization: Bearer …\", or username and password".into()),
                );
                None
            }
        },
        _ => None,
    };
    let mut sources = Vec::new();
    for l in raw {
        let name = l.name.get_ref();
        let Some(url) = &l.url else {
            for (key, span) in [
                ("refresh", l.refresh.as_ref().map(|_| l.name.span())),
                ("refresh_every", l.refresh_every.as_ref().map(S::span)),
                ("credentials", l.credentials.as_ref().map(S::span)),
            ] {
                if let Some(span) = span {
                    p.at(
                        span,
                        format!("list {name:?} has `{key}` but no `url`"),
                        Some("only sources Haven downloads are refreshed: add the feed's `url`, or remove the key".into()),
                    );
                }
            }
            continue;
        };
        let Some(spec) = specs.iter().find(|s| &s.name == name) else { continue };
        let own = (l.refresh.is_some() || l.refresh_every.is_some()).then(|| refresh(p, l.refresh.as_deref(), l.refresh_every.as_ref()));
        let illegal = spec.category.is_some_and(|c| c.is_illegal()) || spec.labels.values().flatten().any(|c| c.is_illegal());
        let schedule = own.or_else(|| default_refresh.clone()).unwrap_or_else(|| {
            if illegal { Refresh { times: ILLEGAL_DEFAULT_TIMES.iter().filter_map(|t| t.parse().ok()).collect(), every: None } } else { Refresh::default() }
        });
        if let Some(c) = &l.credentials {
            if !safe_for_credentials(url.get_ref()) {
                p.at(
                    url.span(),
                    format!("list {name:?} sends credentials, but its `url` is not https"),
                    Some("credentials are only sent over https (or to this machine): use the feed's https:// address".into()),
                );
            }
            match (&secrets_path, &secrets) {
                (None, _) => p.at(
                    c.span(),
                    format!("list {name:?} names credentials {:?} but there is no secrets file", c.get_ref()),
                    Some("add `[lists] secrets = \"haven-data/list-secrets.toml\"` (owner-only: chmod 600) holding that entry".into()),
                ),
                (Some(path), Some(s)) if s.get(c.get_ref()).is_none() => {
                    let known = s.names();
                    p.at(
                        c.span(),
                        format!("list {name:?}: {} has no entry [{}]", path.display(), c.get_ref()),
                        Some(if known.is_empty() {
                            "add the table, with header = \"Name: value\" or username and password".into()
                        } else {
                            format!("it has: {}", known.join(", "))
                        }),
                    );
                }
                _ => {}
            }
        }
        sources.push(Feed { source: name.clone(), refresh: schedule, credentials: l.credentials.as_ref().map(|c| c.get_ref().clone()) });
    }
    Feeds { timezone: tz.clone(), secrets: secrets_path, sources }
}

/// `refresh` times and `refresh_every`, checked.
fn refresh(p: &mut Problems<'_>, times: Option<&[S]>, every: Option<&S>) -> Refresh {
    let mut out = Refresh::default();
    for t in times.unwrap_or_default() {
        match t.get_ref().parse::<Time>() {
            Ok(time) => out.times.push(time),
            Err(_) => {
                p.at(t.span(), format!("{:?} is not a time of day", t.get_ref()), Some("write 24-hour \"HH:MM\" on the trust's clock, e.g. \"06:00\"".into()))
            }
        }
    }
    out.times.sort();
    out.times.dedup();
    if let Some(e) = every {
        match e.get_ref().parse::<SignedDuration>() {
            Ok(d) if d >= SignedDuration::from_secs(1) => out.every = Some(d),
            _ => p.at(e.span(), format!("refresh_every {:?} is not a length of time", e.get_ref()), Some("write e.g. \"12h\", \"90m\" or \"30s\"".into())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn twice() -> Refresh {
        Refresh { times: vec![Time::constant(6, 0, 0, 0), Time::constant(18, 0, 0, 0)], every: None }
    }

    fn ran(last: &str, failures: u32) -> History {
        History { last_run: Some(at(last)), failures }
    }

    /// When `r` is next due, asked a minute after its last run.
    fn due(r: &Refresh, last: &str, failures: u32) -> Timestamp {
        r.next_due(&london(), &ran(last, failures), at(last) + SignedDuration::from_mins(1)).unwrap()
    }

    #[test]
    fn twice_a_day_on_the_trusts_clock() {
        // In summer 06:00 in London is 05:00 UTC.
        assert_eq!(due(&twice(), "2026-07-10T05:00:07Z", 0), at("2026-07-10T17:00:00Z"));
        assert_eq!(due(&twice(), "2026-07-10T17:00:03Z", 0), at("2026-07-11T05:00:00Z"));
        // In winter it is 06:00 UTC.
        assert_eq!(due(&twice(), "2026-12-10T18:00:03Z", 0), at("2026-12-11T06:00:00Z"));
        let now = at("2026-07-10T09:00:00Z");
        // Never run: due now.
        assert_eq!(twice().next_due(&london(), &History::default(), now), Some(now));
        // Haven was down over the 06:00 slot: due (at once) from when it passed.
        let late = twice().next_due(&london(), &ran("2026-07-09T17:00:01Z", 0), now).unwrap();
        assert_eq!(late, at("2026-07-10T05:00:00Z"));
        assert!(late <= now);
        // Not scheduled at all.
        assert_eq!(Refresh::default().next_due(&london(), &History::default(), now), None);
    }

    #[test]
    fn across_the_clock_changes() {
        // The clocks go forward on 29 March 2026: 06:00 that day is 05:00 UTC, 23 hours after 06:00 GMT the day before.
        let six = Refresh { times: vec![Time::constant(6, 0, 0, 0)], every: None };
        assert_eq!(due(&six, "2026-03-28T06:00:00Z", 0), at("2026-03-29T05:00:00Z"));
        // 01:30 does not exist that day: it happens at the first moment after the gap (02:30 BST, 01:30 UTC).
        let gap = Refresh { times: vec![Time::constant(1, 30, 0, 0)], every: None };
        assert_eq!(due(&gap, "2026-03-28T02:00:00Z", 0), at("2026-03-29T01:30:00Z"));
        // The clocks go back on 25 October 2026: 06:00 that day is 06:00 UTC, 25 hours on.
        assert_eq!(due(&six, "2026-10-24T05:00:00Z", 0), at("2026-10-25T06:00:00Z"));
    }

    #[test]
    fn every_so_often_and_whichever_comes_first() {
        let every = Refresh { times: Vec::new(), every: Some(SignedDuration::from_hours(12)) };
        assert_eq!(due(&every, "2026-07-10T08:00:00Z", 0), at("2026-07-10T20:00:00Z"));
        let both = Refresh { every: Some(SignedDuration::from_hours(4)), ..twice() };
        assert_eq!(due(&both, "2026-07-10T08:00:00Z", 0), at("2026-07-10T12:00:00Z"));
        assert_eq!(due(&both, "2026-07-10T15:00:00Z", 0), at("2026-07-10T17:00:00Z"));
        // A last run "in the future" (the clock was put back) counts from now.
        let now = at("2026-07-10T09:00:00Z");
        assert_eq!(every.next_due(&london(), &ran("2026-07-11T08:00:00Z", 0), now), Some(at("2026-07-10T21:00:00Z")));
    }

    #[test]
    fn a_failing_feed_is_tried_again_sooner_backing_off() {
        assert_eq!(due(&twice(), "2026-07-10T05:00:00Z", 1), at("2026-07-10T05:05:00Z"));
        assert_eq!(due(&twice(), "2026-07-10T05:00:00Z", 3), at("2026-07-10T05:20:00Z"));
        assert_eq!(due(&twice(), "2026-07-10T05:00:00Z", 40), at("2026-07-10T06:00:00Z"), "at most an hour");
        // Never later than the next scheduled time.
        assert_eq!(due(&twice(), "2026-07-10T16:50:00Z", 9), at("2026-07-10T17:00:00Z"));
        assert_eq!(retry_after(1), SignedDuration::from_mins(5));
        assert_eq!(retry_after(2), SignedDuration::from_mins(10));
        assert_eq!(retry_after(u32::MAX), RETRY_MAX);
    }
}

#[cfg(test)]
mod check_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::Config;

    const BASE: &str =
        "trust = \"T\"\ntimezone = \"Europe/London\"\n[[school]]\nid = \"a\"\nname = \"A\"\n[[group]]\nid = \"pupils\"\n[[policy]]\nid = \"pupils\"\n";

    fn parse(dir: &Path, extra: &str) -> Result<Config, crate::ConfigError> {
        let path = dir.join("haven.toml");
        std::fs::write(&path, format!("{BASE}{extra}")).unwrap();
        Config::load(&path)
    }

    fn secrets(dir: &Path, mode: u32) {
        let p = dir.join("list-secrets.toml");
        std::fs::write(&p, "[iwf]\nheader = \"Authorization: Bearer t0ken\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const IWF: &str = "[[list]]\nname = \"iwf\"\nformat = \"urls\"\ncategory = \"csam\"\nurl = \"https://feeds.iwf.example/list\"\n";

    #[test]
    fn feeds_take_their_schedule_from_the_list_then_lists_then_twice_a_day_for_illegal_content() {
        let dir = tempfile::tempdir().unwrap();
        secrets(dir.path(), 0o600);
        let c = parse(
            dir.path(),
            &format!(
                "[lists]\nsecrets = \"list-secrets.toml\"\nrefresh_every = \"12h\"\n{IWF}credentials = \"iwf\"\n\
                 [[list]]\nname = \"ads\"\nformat = \"hosts\"\ncategory = \"advertising\"\nurl = \"http://lists.example/ads\"\n\
                 [[list]]\nname = \"quick\"\nformat = \"hosts\"\ncategory = \"advertising\"\nurl = \"http://lists.example/q\"\nrefresh = [\"18:00\", \"06:00\"]\nrefresh_every = \"30s\"\n"
            ),
        )
        .unwrap();
        let f = &c.feeds;
        assert_eq!(f.secrets.as_deref(), Some(dir.path().join("list-secrets.toml").as_path()));
        assert_eq!(f.sources.len(), 3);
        assert_eq!(f.sources[0].credentials.as_deref(), Some("iwf"));
        assert_eq!(f.sources[0].refresh.every, Some(SignedDuration::from_hours(12)), "the [lists] default");
        assert_eq!(f.sources[1].refresh.every, Some(SignedDuration::from_hours(12)));
        assert_eq!(f.sources[2].refresh.times, [Time::constant(6, 0, 0, 0), Time::constant(18, 0, 0, 0)]);
        assert_eq!(f.sources[2].refresh.every, Some(SignedDuration::from_secs(30)));
        // No defaults: an IWF list is still refreshed twice a day; others only by `haven lists update`.
        let c =
            parse(dir.path(), &format!("{IWF}[[list]]\nname = \"ads\"\nformat = \"hosts\"\ncategory = \"advertising\"\nurl = \"http://lists.example/ads\"\n"))
                .unwrap();
        assert_eq!(c.feeds.sources[0].refresh.times.len(), 2);
        assert!(!c.feeds.sources[1].refresh.scheduled());
    }

    #[test]
    fn bad_feed_keys_are_named_with_their_line_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        secrets(dir.path(), 0o644);
        let e = parse(
            dir.path(),
            "[lists]\nsecrets = \"list-secrets.toml\"\n\
             [[list]]\nname = \"iwf\"\nformat = \"urls\"\ncategory = \"csam\"\nurl = \"http://feeds.iwf.example/list\"\ncredentials = \"iwf\"\nrefresh = [\"6am\"]\nrefresh_every = \"often\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(":11: list secrets file") && e.contains("chmod 600") && !e.contains("t0ken"), "{e}");
        assert!(e.contains(":16:") && e.contains("not https"), "{e}");
        assert!(e.contains(":18: \"6am\" is not a time of day"), "{e}");
        assert!(e.contains(":19: refresh_every \"often\""), "{e}");
        // An entry the file does not have; credentials with no secrets file; keys on a list Haven does not download.
        std::fs::set_permissions(dir.path().join("list-secrets.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = parse(dir.path(), &format!("[lists]\nsecrets = \"list-secrets.toml\"\n{IWF}credentials = \"ctiru\"\n")).unwrap_err().to_string();
        assert!(e.contains("has no entry [ctiru]") && e.contains("it has: iwf"), "{e}");
        let e = parse(dir.path(), &format!("{IWF}credentials = \"iwf\"\n")).unwrap_err().to_string();
        assert!(e.contains("there is no secrets file") && e.contains("[lists] secrets"), "{e}");
        std::fs::write(dir.path().join("ads.hosts"), "0.0.0.0 ads.example\n").unwrap();
        let e = parse(dir.path(), "[[list]]\nname = \"ads\"\nformat = \"hosts\"\ncategory = \"advertising\"\npath = \"ads.hosts\"\nrefresh_every = \"1h\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has `refresh_every` but no `url`"), "{e}");
    }
}
