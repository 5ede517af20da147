//! Monitoring events become alerts: classified, kept only at or above the
//! school's threshold, grouped with an open alert about the same concern, given
//! a deadline, and routed (level 5 calls someone now).

use haven_alerts::routing::{Address, Contact, Lists};
use haven_alerts::{Grouping, OpenAlert};
use haven_store::StoreError;
use haven_store::alerts::NewAlert;
use haven_store::people::Device;
use haven_textscan::Concern;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Service;

/// What a device sends (`POST /api/v1/events`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Who was using the device (their school login).
    pub person: String,
    /// What they typed or saw.
    pub text: String,
    /// `typed`, `search`, `chat` or `page`.
    pub source: String,
    /// Where, if on the web.
    #[serde(default)]
    pub url: Option<String>,
    /// When (RFC 3339); when it arrived, if absent.
    #[serde(default)]
    pub observed_at: Option<String>,
    /// A screenshot, base64 (PNG or JPEG, at most 5 MB). Kept with the alert,
    /// except when the text shows sexual content or grooming: then it is
    /// never stored, since it may show a child being abused.
    #[serde(default)]
    pub screenshot: Option<String>,
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Alerts created or added to.
    pub alerts: Vec<AlertRef>,
    /// Findings below the school's threshold (logged only).
    pub below_threshold: usize,
}

/// One alert an event touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRef {
    /// The alert's id.
    pub id: i64,
    /// Category of concern.
    pub category: String,
    /// Its level now.
    pub level: u8,
    /// A new alert, or a repeat joined to an open one.
    pub new: bool,
}

/// An event Haven cannot take.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// A field is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The record failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the filter saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// A search, with its words.
    Search(String),
    /// A blocked request, with the ids of the categories that blocked it.
    Blocked(Vec<String>),
}

/// One category of concern found, ready to record.
struct Finding {
    category: Concern,
    level: u8,
    spans: Vec<[usize; 2]>,
    explanation: String,
}

/// What became of an event's screenshot.
#[derive(Debug, Clone, Default)]
struct Shot {
    /// SHA-256 of the kept file.
    kept: Option<String>,
    /// Sent but not kept.
    withheld: bool,
}

/// Where a finding came from.
#[derive(Clone, Copy)]
struct At<'a> {
    screenshot: Option<&'a Shot>,
    school: &'a str,
    person: &'a str,
    actor: &'a str,
    source: &'a str,
    url: Option<&'a str>,
    received: Timestamp,
    now: Timestamp,
}

const SOURCES: &[&str] = &["typed", "search", "chat", "page"];
/// Evidence kept with an alert: enough for a DSL to judge, not a transcript.
const EXCERPT_CHARS: usize = 600;

impl Service {
    /// Takes one event from `device`, received at `now`.
    pub async fn ingest(&self, device: &Device, event: &Event, now: Timestamp) -> Result<Outcome, IngestError> {
        if !SOURCES.contains(&event.source.as_str()) {
            return Err(IngestError::Invalid(format!("source {:?} must be one of typed, search, chat, page", event.source)));
        }
        self.ingest_at(&device.school, &format!("device:{}", device.id), event, now).await
    }

    /// A concern reported through the public page: classified like an event,
    /// and never dropped: a person took the trouble to tell, so a report the
    /// classifier finds nothing in is still General risk at level 3.
    pub async fn report(&self, school: &str, person: &str, text: &str, contact: &str, now: Timestamp) -> Result<Outcome, IngestError> {
        let text = format!("{text}\n\n(reported by: {contact})");
        let event = Event { person: person.into(), text: text.clone(), source: "report".into(), url: None, observed_at: None, screenshot: None };
        let mut out = self.ingest_at(school, "public-report", &event, now).await?;
        if out.alerts.is_empty() {
            let finding = Finding { category: Concern::GeneralRisk, level: 3, spans: Vec::new(), explanation: "A concern reported by a person".into() };
            let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
            let at = At { school, person, actor: "public-report", source: "report", url: None, received: now, now, screenshot: None };
            out = self.record(&at, &excerpt, vec![finding]).await?;
        }
        Ok(out)
    }

    async fn ingest_at(&self, school: &str, actor: &str, event: &Event, now: Timestamp) -> Result<Outcome, IngestError> {
        if event.person.trim().is_empty() || event.person.len() > 200 {
            return Err(IngestError::Invalid("person must be the pupil's login (1–200 characters)".into()));
        }
        if event.text.len() > 64 * 1024 {
            return Err(IngestError::Invalid("text is over 64 KB; send what was typed or seen, not a whole page".into()));
        }
        let observed = match &event.observed_at {
            Some(t) => t.parse::<Timestamp>().map_err(|_| IngestError::Invalid(format!("observed_at {t:?} is not RFC 3339 (2026-11-24T10:15:00Z)")))?,
            None => now,
        };
        // A device clock far ahead would push deadlines out: the arrival time bounds it.
        let received = observed.min(now);
        let found = self.settings().classifier_for(school).classify(&event.text);
        let excerpt: String = event.text.chars().take(EXCERPT_CHARS).collect();
        let findings = found
            .categories
            .iter()
            .map(|f| Finding {
                category: f.category,
                level: f.level,
                spans: found.spans.iter().filter(|s| s.category == f.category && s.end <= excerpt.len()).map(|s| [s.start, s.end]).collect(),
                explanation: found.explanation.clone(),
            })
            .collect();
        // A screenshot is kept only as evidence of a finding: with nothing found, nothing is kept.
        let shot = match &event.screenshot {
            Some(b64) if !found.categories.is_empty() => Some(self.keep_screenshot(b64, &found)?),
            _ => None,
        };
        let at = At { school, person: &event.person, actor, source: &event.source, url: event.url.as_deref(), received, now, screenshot: shot.as_ref() };
        self.record(&at, &excerpt, findings).await
    }

    /// Keeps a screenshot by its SHA-256, unless the text suggests it could
    /// show sexual content or grooming: suspected child-abuse imagery is
    /// never stored or shown, by anyone.
    fn keep_screenshot(&self, b64: &str, found: &haven_textscan::Classification) -> Result<Shot, IngestError> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| IngestError::Invalid("screenshot must be base64 (standard alphabet)".into()))?;
        if bytes.len() > 5 * 1024 * 1024 {
            return Err(IngestError::Invalid("screenshot is over 5 MB".into()));
        }
        if !(bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.starts_with(&[0xff, 0xd8, 0xff])) {
            return Err(IngestError::Invalid("screenshot must be a PNG or JPEG image".into()));
        }
        if found.categories.iter().any(|f| matches!(f.category, Concern::SexualContent | Concern::Grooming)) {
            return Ok(Shot { kept: None, withheld: true });
        }
        use sha2::Digest as _;
        let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        crate::incidents::store_file(&self.evidence_dir, &sha, &bytes).map_err(|e| IngestError::Invalid(format!("could not keep the screenshot: {e}")))?;
        Ok(Shot { kept: Some(sha), withheld: false })
    }

    /// What the filter saw: a search with a concern, or a blocked attempt in
    /// a safeguarding category. Searches are classified like typed text;
    /// blocks become the concern `haven_alerts::from_block` names. Both then
    /// meet the school's thresholds and grouping like any other finding.
    pub async fn from_filter(&self, school: &str, person: &str, url: &str, seen: Filtered, now: Timestamp) -> Result<Outcome, IngestError> {
        match seen {
            Filtered::Search(terms) => {
                let event = Event { person: person.into(), text: terms, source: "search".into(), url: Some(url.into()), observed_at: None, screenshot: None };
                self.ingest_at(school, "filter", &event, now).await
            }
            Filtered::Blocked(categories) => {
                let Some((category, concern, level)) = categories
                    .iter()
                    .filter_map(|c| haven_policy::Category::from_id(c))
                    .filter_map(|c| haven_alerts::from_block(c).map(|(k, l)| (c, k, l)))
                    .max_by_key(|x| x.2)
                else {
                    return Ok(Outcome { alerts: Vec::new(), below_threshold: 0 });
                };
                let excerpt = format!("Tried to open {url}, blocked as {}", category.title());
                let finding = Finding { category: concern, level, spans: Vec::new(), explanation: format!("A blocked attempt: {}", category.title()) };
                let at = At { school, person, actor: "filter", source: "filter", url: Some(url), received: now, now, screenshot: None };
                self.record(&at, &excerpt, vec![finding]).await
            }
        }
    }

    /// Stores findings: thresholds, grouping with open alerts, deadlines, notices.
    async fn record(&self, at: &At<'_>, excerpt: &str, findings: Vec<Finding>) -> Result<Outcome, IngestError> {
        let At { school, person, actor, source, url, received, now, .. } = *at;
        let mut out = Outcome { alerts: Vec::new(), below_threshold: 0 };
        if findings.is_empty() {
            return Ok(out);
        }
        let thresholds = self.settings().thresholds.get(school).copied().unwrap_or_default();
        let calendar = self.calendar(school);
        let open: Vec<OpenAlert> = self
            .store
            .open_alerts(school, person)
            .await?
            .into_iter()
            .filter_map(|o| {
                Some(OpenAlert {
                    id: o.id,
                    school: school.to_string(),
                    person: person.to_string(),
                    category: Concern::parse(&o.category)?,
                    level: o.level,
                    last_seen: o.last_seen,
                })
            })
            .collect();
        for f in findings {
            if !thresholds.alerts(f.category, f.level) {
                out.below_threshold += 1;
                continue;
            }
            match haven_alerts::group(&open, school, person, f.category, f.level, received, self.group_window) {
                Grouping::Join { id, raise_to } => {
                    let raise = raise_to.map(|l| (l, haven_alerts::due(l, received, &calendar).at()));
                    self.store.join_alert(id, received, raise).await?;
                    if let Some(level) = raise_to {
                        self.route(id, level, received, school).await?;
                    }
                    let level = raise_to.unwrap_or_else(|| open.iter().find(|o| o.id == id).map_or(f.level, |o| o.level));
                    out.alerts.push(AlertRef { id, category: f.category.name().into(), level, new: false });
                }
                Grouping::New => {
                    let alert = NewAlert {
                        school: school.to_string(),
                        person: person.to_string(),
                        category: f.category.name().into(),
                        level: f.level,
                        received_at: received,
                        due_at: haven_alerts::due(f.level, received, &calendar).at(),
                        source: source.to_string(),
                        excerpt: excerpt.to_string(),
                        url: url.map(str::to_string),
                        explanation: f.explanation,
                        spans: serde_json::to_string(&f.spans).unwrap_or_else(|_| "[]".into()),
                        screenshot: at.screenshot.and_then(|s| s.kept.clone()),
                        screenshot_withheld: at.screenshot.is_some_and(|s| s.withheld),
                    };
                    let id = self.store.insert_alert(&alert).await?;
                    self.store.audit(now, actor, "alert.create", &format!("alert:{id}"), &format!("level {}", f.level)).await?;
                    self.route(id, f.level, received, school).await?;
                    out.alerts.push(AlertRef { id, category: f.category.name().into(), level: f.level, new: true });
                }
            }
        }
        Ok(out)
    }

    /// Queues the first notices for an alert at `level`.
    pub async fn route(&self, alert: i64, level: u8, received: Timestamp, school: &str) -> Result<(), StoreError> {
        let calendar = self.calendar(school);
        let lists = self.lists(school).await?;
        for n in haven_alerts::notices(level, received, &calendar, &lists) {
            let (channel, target) = match &n.to.address {
                Address::Email(e) => ("email", e.as_str()),
                Address::Webhook(w) => ("webhook", w.as_str()),
            };
            self.store.enqueue(alert, &n.to.name, channel, target, n.at, n.callout).await?;
        }
        Ok(())
    }

    /// The call-out lists and DSLs of a school, from the record.
    pub async fn lists(&self, school: &str) -> Result<Lists, StoreError> {
        let contact = |o: haven_store::people::OnCall| Contact {
            name: o.name,
            address: match (o.email, o.webhook) {
                (Some(e), _) => Address::Email(e),
                (None, Some(w)) => Address::Webhook(w),
                (None, None) => Address::Email(String::new()),
            },
            priority: u32::try_from(o.priority).unwrap_or(u32::MAX),
        };
        let school_oncall: Vec<Contact> = self.store.oncall(Some(school)).await?.into_iter().map(contact).collect();
        let trust_oncall = self.store.oncall(None).await?.into_iter().map(contact).collect();
        // The DSLs hear of levels 3–4: the school's on-call list is where they are.
        Ok(Lists { dsls: school_oncall.clone(), school_oncall, trust_oncall })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_store::{Role, Store};

    async fn service() -> (Service, tempfile::TempDir, Device) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        store.upsert_school("oak", "Oak", false).await.unwrap();
        let mut policy = haven_policy::PolicySet::default();
        let mut cal = haven_policy::schedule::Calendar::london();
        cal.terms = vec![(jiff::civil::date(2026, 9, 3), jiff::civil::date(2026, 12, 18))];
        policy.schools.push(haven_policy::model::School { id: "oak".into(), name: "Oak".into(), calendar: cal });
        let (device, _) = store.add_device("oak", "Library 1", "2026-11-24T09:00:00Z".parse().unwrap()).await.unwrap();
        store.add_oncall(Some("oak"), "DSL", Some("dsl@oak.example"), None, 1).await.unwrap();
        store.add_oncall(Some("oak"), "Head", None, Some("http://127.0.0.1:9/call"), 2).await.unwrap();
        (Service::new(store, &policy), dir, device)
    }

    fn event(text: &str, at: &str) -> Event {
        Event { person: "amy.pupil".into(), text: text.into(), source: "typed".into(), url: None, observed_at: Some(at.into()), screenshot: None }
    }

    #[tokio::test]
    async fn a_threat_to_life_alerts_now_and_calls_the_first_on_call() {
        let (s, _dir, device) = service().await;
        let now = "2026-11-29T02:00:00Z".parse().unwrap(); // 02:00 on a Sunday in term
        let out = s.ingest(&device, &event("i want to kill myself tonight, i have the pills", "2026-11-29T02:00:00Z"), now).await.unwrap();
        let a = &out.alerts[0];
        assert_eq!((a.category.as_str(), a.level, a.new), ("Vulnerable person", 5, true));
        let queued = s.store.outbox(now).await.unwrap();
        assert_eq!(queued.len(), 1, "one call-out now: the first on the list");
        assert_eq!((queued[0].target.as_str(), queued[0].callout), ("dsl@oak.example", true));
        let (dsl, _) = s.store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
        let listed = s.store.alerts_for(&dsl, 10).await.unwrap();
        assert_eq!(listed[0].due_at.as_deref(), Some("2026-11-29T02:00:00Z"), "due now");
    }

    #[tokio::test]
    async fn repeats_group_and_nothing_wakes_anyone_below_five_at_night() {
        let (s, _dir, device) = service().await;
        let night = "2026-11-24T22:00:00Z".parse().unwrap();
        let one = s.ingest(&device, &event("nobody likes you, everyone hates you", "2026-11-24T22:00:00Z"), night).await.unwrap();
        let two = s.ingest(&device, &event("everyone hates you", "2026-11-24T22:10:00Z"), "2026-11-24T22:10:00Z".parse().unwrap()).await.unwrap();
        let bully = |o: &Outcome| o.alerts.iter().find(|a| a.category == "Bullying/Violence").cloned();
        let (first, second) = (bully(&one).unwrap(), bully(&two).unwrap());
        assert!(first.new && first.level >= 3, "{one:?}");
        assert!(!second.new && second.id == first.id, "joined, not repeated");
        assert!(s.store.outbox(night).await.unwrap().is_empty(), "no out-of-hours notices below level 5");
        let next_morning = "2026-11-25T08:00:00Z".parse().unwrap();
        assert!(!s.store.outbox(next_morning).await.unwrap().is_empty(), "told at the start of the next working day");
    }

    #[tokio::test]
    async fn searches_and_blocked_attempts_from_the_filter_become_alerts() {
        let (s, _dir, _device) = service().await;
        let now = "2026-11-24T10:00:00Z".parse().unwrap();
        let out =
            s.from_filter("oak", "amy.pupil", "http://www.google.com/search?q=x", Filtered::Search("how to kill myself painlessly".into()), now).await.unwrap();
        assert_eq!(out.alerts[0].category, "Vulnerable person");
        let blocked = s.from_filter("oak", "ben.pupil", "http://self-harm.example/", Filtered::Blocked(vec!["self-harm".into()]), now).await.unwrap();
        assert_eq!((blocked.alerts[0].category.as_str(), blocked.alerts[0].level), ("Vulnerable person", 3));
        let again = s.from_filter("oak", "ben.pupil", "http://self-harm.example/2", Filtered::Blocked(vec!["self-harm".into()]), now).await.unwrap();
        assert!(!again.alerts[0].new, "repeat attempts group");
        let games = s.from_filter("oak", "ben.pupil", "http://games.example/", Filtered::Blocked(vec!["games".into()]), now).await.unwrap();
        assert!(games.alerts.is_empty(), "games are policy, not a concern");
    }

    #[tokio::test]
    async fn screenshots_are_kept_except_where_they_may_show_sexual_content() {
        use base64::Engine as _;
        let (s, dir, device) = service().await;
        let mut s = s;
        s.evidence_dir = dir.path().join("evidence");
        let now = "2026-11-24T10:00:00Z".parse().unwrap();
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n fake image bytes");
        let mut e = event("nobody likes you, everyone hates you", "2026-11-24T10:00:00Z");
        e.screenshot = Some(png.clone());
        let out = s.ingest(&device, &e, now).await.unwrap();
        let (dsl, _) = s.store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
        let d = s.store.alert_detail(&dsl, out.alerts[0].id).await.unwrap().unwrap();
        let sha = d.screenshot.clone().expect("kept");
        assert!(dir.path().join("evidence").join(&sha).exists());
        let mut e = event("send me nudes, dont tell your parents", "2026-11-24T10:00:00Z");
        e.person = "ben.pupil".into();
        e.screenshot = Some(png);
        let out = s.ingest(&device, &e, now).await.unwrap();
        for a in &out.alerts {
            let d = s.store.alert_detail(&dsl, a.id).await.unwrap().unwrap();
            assert!(d.screenshot.is_none() && d.screenshot_withheld, "never stored: {a:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("evidence")).unwrap().count(), 1, "only the first image is on disk");
        let benign = Event {
            screenshot: Some(base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n other")),
            ..event("see you at practice", "2026-11-24T10:00:00Z")
        };
        s.ingest(&device, &benign, now).await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("evidence")).unwrap().count(), 1, "nothing found: nothing kept");
        let mut bad = event("everyone hates you", "2026-11-24T10:00:00Z");
        bad.screenshot = Some("bm90IGFuIGltYWdl".into());
        assert!(s.ingest(&device, &bad, now).await.unwrap_err().to_string().contains("PNG or JPEG"));
    }

    #[tokio::test]
    async fn bad_events_are_refused_with_the_reason_and_benign_ones_make_nothing() {
        let (s, _dir, device) = service().await;
        let now = "2026-11-24T10:00:00Z".parse().unwrap();
        let mut e = event("hello", "2026-11-24T10:00:00Z");
        e.source = "keylogger".into();
        assert!(s.ingest(&device, &e, now).await.unwrap_err().to_string().contains("typed, search, chat, page"));
        let e = event("hello", "yesterday");
        assert!(s.ingest(&device, &e, now).await.unwrap_err().to_string().contains("RFC 3339"));
        let out = s.ingest(&device, &event("see you at football practice", "2026-11-24T10:00:00Z"), now).await.unwrap();
        assert!(out.alerts.is_empty());
    }
}
