//! Monitoring events become alerts: classified, kept only at or above the
//! school's threshold, grouped with an open alert about the same concern, given
//! a deadline, and routed (level 5 calls someone now). Each event is one
//! transaction: the alert or the occurrence that joins one, the audit row, the
//! notices, the report it came from and its idempotency key are kept together
//! or not at all, and the notification worker is woken by the commit.

use haven_accesslog::{Finding as Seen, ReportKind};
use haven_alerts::routing::{Address, Contact, Lists};
use haven_alerts::{Grouping, OpenAlert};
use haven_store::Role;
use haven_store::StoreError;
use haven_store::alerts::{NewAlert, NewOccurrence};
use haven_store::people::Device;
use haven_store::record::Tx;
use haven_store::reports::NewReport;
use haven_store::staff::Audience;
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
    /// The device's own id for this event (also accepted as the
    /// `Idempotency-Key` header): an event sent again with the same key, after
    /// a lost answer, is answered as before and not stored twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The page's title, if on the web. Accepted (the extension sends it) but
    /// not yet kept: what a page showed is issue 18's page content.
    #[serde(default)]
    pub title: Option<String>,
}

/// What became of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Alerts created or added to.
    pub alerts: Vec<AlertRef>,
    /// Findings below the school's threshold (logged only).
    pub below_threshold: usize,
    /// This event had been taken before (same idempotency key); nothing new was stored.
    #[serde(default)]
    pub replayed: bool,
    /// The server would like a screenshot of the page for this finding
    /// (`POST /api/v1/events/screenshot` with the event's idempotency key):
    /// never asked for sexual content or grooming.
    #[serde(default)]
    pub screenshot_wanted: bool,
}

/// One alert an event touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Runs the classifier, whose transformer takes milliseconds, without holding
/// up the other tasks of this worker thread: on the multi-threaded runtime
/// of `haven serve` they move to another worker meanwhile.
fn heavy<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One category of concern found, ready to record.
struct Finding {
    category: Concern,
    level: u8,
    spans: Vec<[usize; 2]>,
    explanation: String,
    /// Its own evidence, when not the event's excerpt: the messages read
    /// together that showed it, each with its time.
    evidence: Option<String>,
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
    /// How many identical findings this one stands for.
    repeats: u32,
    /// A person's report: always a new alert, never below level 3, no threshold.
    human: bool,
    /// The event's idempotency key, scoped to its sender.
    key: Option<(&'a str, &'a str)>,
}

const SOURCES: &[&str] = &["typed", "search", "chat", "page"];
/// What a person writes, read together with what they wrote just before
/// (a page they saw is not their words).
const WINDOWED: &[&str] = &["typed", "search", "chat"];
/// Evidence kept with an alert: enough for a DSL to judge, not a transcript.
const EXCERPT_CHARS: usize = 600;
/// A report from a person is never below this level.
const REPORT_LEVEL: u8 = 3;

impl Service {
    /// Takes one event from `device`, received at `now`.
    pub async fn ingest(&self, device: &Device, event: &Event, now: Timestamp) -> Result<Outcome, IngestError> {
        if !SOURCES.contains(&event.source.as_str()) {
            return Err(IngestError::Invalid(format!("source {:?} must be one of typed, search, chat, page", event.source)));
        }
        if event.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 200) {
            return Err(IngestError::Invalid("idempotency_key must be 1–200 characters".into()));
        }
        let scope = format!("device:{}", device.id);
        self.ingest_at(&device.school, &scope, event, now, 1).await
    }

    /// A concern reported through the public page. It is a person's report,
    /// not pupil text: classified on the reporter's words alone (their
    /// contact details are kept apart and never classified), always a new
    /// alert in the DSL's queue, never below level 3 and never held back by a
    /// school's thresholds.
    pub async fn report(&self, school: &str, person: &str, text: &str, contact: &str, now: Timestamp) -> Result<Outcome, IngestError> {
        let report = NewReport {
            kind: "public".into(),
            school: Some(school.to_string()),
            person: Some(person.to_string()),
            at: now,
            reference: None,
            url: None,
            categories: Vec::new(),
            rule: None,
            words: text.to_string(),
            contact: Some(contact.to_string()).filter(|c| !c.trim().is_empty()),
        };
        self.human_report(school, "public-report", report, None, None, now).await
    }

    /// A finding from the DNS filter or the proxy, standing for `repeats`
    /// identical ones: a search with a concern (classified like typed text),
    /// a blocked attempt in a safeguarding category (the concern
    /// `haven_alerts::from_block` names), or a block page button (a worry is a
    /// report for the DSL; "should be allowed" is kept for IT).
    pub async fn take(&self, finding: &Seen, repeats: u32, now: Timestamp) -> Result<Outcome, IngestError> {
        let seen = finding.seen();
        let none = Outcome { alerts: Vec::new(), below_threshold: 0, replayed: false, screenshot_wanted: false };
        let Some(school) = seen.school.as_deref() else {
            // Without a school there is no DSL to tell: the access log has it.
            return Ok(none);
        };
        match finding {
            Seen::Search { terms, .. } => {
                let event = Event {
                    person: seen.person.clone(),
                    text: terms.clone(),
                    source: "search".into(),
                    url: Some(seen.url.clone()),
                    observed_at: None,
                    screenshot: None,
                    title: None,
                    idempotency_key: None,
                };
                self.ingest_at(school, "filter", &event, seen.at.min(now), repeats).await
            }
            Seen::Blocked { categories, .. } => {
                let Some((category, concern, level)) =
                    categories.iter().filter_map(|c| haven_alerts::from_block(c).map(|(k, l)| (c, k, l))).max_by_key(|x| x.2)
                else {
                    return Ok(none);
                };
                let tries = if repeats > 1 { format!(" ({repeats} tries)") } else { String::new() };
                let excerpt = format!("Tried to open {}, blocked as {}{tries}", seen.url, category.title());
                let finding =
                    Finding { category: concern, level, spans: Vec::new(), explanation: format!("A blocked attempt: {}", category.title()), evidence: None };
                let at = At {
                    school,
                    person: &seen.person,
                    actor: "filter",
                    source: "filter",
                    url: Some(&seen.url),
                    received: seen.at.min(now),
                    now,
                    screenshot: None,
                    repeats,
                    human: false,
                    key: None,
                };
                self.record(&at, &excerpt, vec![finding], None).await
            }
            Seen::Report { kind, reference, categories, rule, words, .. } => {
                let report = NewReport {
                    kind: kind.name().into(),
                    school: Some(school.to_string()),
                    person: Some(seen.person.clone()),
                    at: seen.at.min(now),
                    reference: Some(reference.clone()),
                    url: Some(seen.url.clone()),
                    categories: categories.iter().map(|c| c.id().to_string()).collect(),
                    rule: rule.clone(),
                    words: words.clone(),
                    contact: None,
                };
                match kind {
                    ReportKind::Worrying => {
                        let blocked = categories.iter().filter_map(haven_alerts::from_block).max_by_key(|x| x.1);
                        // A second press of the same page's button is the same report.
                        let key = Some(("block-page", reference.as_str()));
                        self.human_report(school, "block-page", report, blocked, key, now).await
                    }
                    ReportKind::ShouldBeAllowed => {
                        // For IT, not the DSL: kept in the record, no alert.
                        let mut tx = self.store.begin().await?;
                        let id = tx.insert_report(&report).await?;
                        tx.audit(now, "block-page", "report.review", &format!("report:{id}"), reference).await?;
                        // It waits in the filtering requests queue for the
                        // approvers, as a teacher's request does.
                        if let Some(site) = site_of(&seen.url) {
                            let reason = match words.trim() {
                                "" => format!("Asked from the block page (reference {reference})"),
                                w => format!("{w} (block page reference {reference})"),
                            };
                            let request = haven_store::changes::NewChange {
                                school: school.to_string(),
                                kind: "pupil".into(),
                                scope: "user".into(),
                                scope_id: Some(seen.person.clone()),
                                verdict: Some("allow".into()),
                                site: Some(site),
                                category: None,
                                reason,
                                starts_at: now,
                                until: None,
                            };
                            tx.add_filter_change(&request, "requested", &format!("pupil {}", seen.person), now).await?;
                        }
                        tx.commit().await?;
                        Ok(none)
                    }
                }
            }
        }
    }

    async fn ingest_at(&self, school: &str, actor: &str, event: &Event, now: Timestamp, repeats: u32) -> Result<Outcome, IngestError> {
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
        let classifier = self.settings().classifier_for(school).clone();
        let found = heavy(|| classifier.classify(&event.text));
        let excerpt: String = event.text.chars().take(EXCERPT_CHARS).collect();
        let mut findings = findings(&found, &excerpt);
        // The person's recent messages read together may say more than this one alone.
        let key = event.idempotency_key.as_deref().map(|k| format!("{actor}\n{k}"));
        let together = if WINDOWED.contains(&event.source.as_str()) {
            heavy(|| self.read_together(&classifier, school, &event.person, &event.text, &found, received, key))
        } else {
            Vec::new()
        };
        let raised: Vec<(Concern, u8)> = together.iter().map(|f| (f.category, f.level)).collect();
        if !together.is_empty() {
            findings.retain(|f| !raised.iter().any(|(c, _)| *c == f.category));
            findings.extend(together);
            findings.sort_by_key(|f| std::cmp::Reverse(f.level));
        }
        // A screenshot is kept only as evidence of a finding: with nothing found, nothing is kept.
        let shot = match &event.screenshot {
            Some(b64) if !findings.is_empty() => {
                let concerns: Vec<Concern> = found.categories.iter().map(|f| f.category).chain(raised.iter().map(|t| t.0)).collect();
                Some(self.keep_screenshot(b64, &concerns)?)
            }
            _ => None,
        };
        let at = At {
            school,
            person: &event.person,
            actor,
            source: &event.source,
            url: event.url.as_deref(),
            received,
            now,
            screenshot: shot.as_ref(),
            repeats,
            human: false,
            key: event.idempotency_key.as_deref().map(|k| (actor, k)),
        };
        let out = self.record(&at, &excerpt, findings, None).await?;
        for &(category, level) in &raised {
            self.windows.note_raised(school, &event.person, category, level, received);
        }
        Ok(out)
    }

    /// Holds the message in the person's window and reads it with their
    /// earlier ones: the categories that reading shows above what each
    /// message showed alone, as findings whose evidence is the messages
    /// (each with its time on the school's clock) and whose explanation says
    /// how many earlier messages made it.
    #[allow(clippy::too_many_arguments)]
    fn read_together(
        &self,
        classifier: &haven_textscan::Classifier,
        school: &str,
        person: &str,
        text: &str,
        found: &haven_textscan::Classification,
        at: Timestamp,
        key: Option<String>,
    ) -> Vec<Finding> {
        let alone = found.categories.iter().map(|f| (f.category, f.level)).collect();
        let message = crate::window::Message { text: text.to_string(), at, alone, key };
        let pushed = self.windows.push(school, person, message.clone());
        if pushed.evicted > 0 {
            self.health.windows_evicted.fetch_add(pushed.evicted, std::sync::atomic::Ordering::Relaxed);
            metrics::counter!("haven_windows_evicted_total").increment(pushed.evicted);
        }
        if pushed.earlier.is_empty() {
            return Vec::new();
        }
        let mut message = message;
        if let Some((cut, _)) = message.text.char_indices().nth(self.windows.limits().chars) {
            message.text.truncate(cut);
        }
        let messages: Vec<&crate::window::Message> = pushed.earlier.iter().chain([&message]).collect();
        let texts: Vec<&str> = messages.iter().map(|m| m.text.as_str()).collect();
        let window = classifier.classify_window(&texts);
        let raised: Vec<(Concern, u8)> =
            crate::window::together(&window, &messages).into_iter().filter(|&(c, l)| !self.windows.raised_before(school, person, c, l, at)).collect();
        if raised.is_empty() {
            return Vec::new();
        }
        let tz = self.calendar(school).tz;
        let (evidence, starts) = evidence(&messages, &tz);
        let n = messages.len() - 1;
        let earlier = if n == 1 { "1 earlier message".to_string() } else { format!("{n} earlier messages") };
        raised
            .into_iter()
            .map(|(category, level)| Finding {
                category,
                level,
                spans: window_spans(&window, category, &texts, &starts),
                explanation: format!("Read together with {earlier}: {}", window.explanation),
                evidence: Some(evidence.clone()),
            })
            .collect()
    }

    /// A person's report: classified on their words alone, at least level 3,
    /// a new alert whatever the thresholds, kept with the report in one transaction.
    async fn human_report(
        &self,
        school: &str,
        actor: &str,
        report: NewReport,
        blocked: Option<(Concern, u8)>,
        key: Option<(&str, &str)>,
        now: Timestamp,
    ) -> Result<Outcome, IngestError> {
        let person = report.person.clone().unwrap_or_default();
        if person.trim().is_empty() || person.len() > 200 {
            return Err(IngestError::Invalid("the person the report is about must be named (1–200 characters)".into()));
        }
        if report.words.len() > 16 * 1024 || report.contact.as_ref().is_some_and(|c| c.len() > 1000) {
            return Err(IngestError::Invalid("a report is at most 16 KB, and contact details at most 1,000 characters".into()));
        }
        let found = heavy(|| self.settings().classifier_for(school).classify_report(&report.words));
        let excerpt: String = report.words.chars().take(EXCERPT_CHARS).collect();
        let mut findings = findings(&found, &excerpt);
        for f in &mut findings {
            f.level = f.level.max(REPORT_LEVEL);
        }
        if findings.is_empty() {
            // A person took the trouble to tell: a report the classifier finds
            // nothing in is still a concern, of the kind the blocked page was, if any.
            let (category, level) = blocked.map_or((Concern::GeneralRisk, REPORT_LEVEL), |(c, l)| (c, l.max(REPORT_LEVEL)));
            let explanation = match report.kind.as_str() {
                "worry" => "A pupil pressed \"I saw something worrying\" on the block page",
                _ => "A concern reported by a person",
            };
            findings.push(Finding { category, level, spans: Vec::new(), explanation: explanation.into(), evidence: None });
        }
        let excerpt = if excerpt.trim().is_empty() { format!("(no words) after a block of {}", report.url.as_deref().unwrap_or("a page")) } else { excerpt };
        let source = if report.kind == "public" { "report" } else { "block-page" };
        let url = report.url.clone();
        let at = At {
            school,
            person: &person,
            actor,
            source,
            url: url.as_deref(),
            received: report.at.min(now),
            now,
            screenshot: None,
            repeats: 1,
            human: true,
            key,
        };
        self.record(&at, &excerpt, findings, Some(report)).await
    }

    /// Keeps a screenshot by its SHA-256, unless the text suggests it could
    /// show sexual content or grooming: suspected child-abuse imagery is
    /// never stored or shown, by anyone.
    fn keep_screenshot(&self, b64: &str, concerns: &[Concern]) -> Result<Shot, IngestError> {
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
        if concerns.iter().any(|c| matches!(c, Concern::SexualContent | Concern::Grooming)) {
            return Ok(Shot { kept: None, withheld: true });
        }
        use sha2::Digest as _;
        let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        crate::incidents::store_file(self, &sha, &bytes).map_err(|e| IngestError::Invalid(format!("could not keep the screenshot: {e}")))?;
        Ok(Shot { kept: Some(sha), withheld: false })
    }

    /// Keeps a screenshot the server asked for with the alerts the device's
    /// event (by its idempotency key) made or joined; how many it was kept
    /// with. Refused (never stored) when any of them is sexual content or
    /// grooming, as for a screenshot sent with the event.
    pub async fn attach_screenshot(&self, device: &Device, key: &str, b64: &str, now: Timestamp) -> Result<usize, IngestError> {
        let scope = format!("device:{}", device.id);
        let mut tx = self.store.begin().await?;
        let before = tx.recall(&scope, key).await?;
        drop(tx);
        let Some(before) = before else {
            return Err(IngestError::Invalid(format!("no event with idempotency_key {key:?} was taken from this device")));
        };
        let out: Outcome = serde_json::from_str(&before).map_err(|e| IngestError::Invalid(format!("the event's outcome is unreadable ({e})")))?;
        let concerns: Vec<Concern> = out.alerts.iter().filter_map(|a| Concern::parse(&a.category)).collect();
        if concerns.is_empty() {
            return Err(IngestError::Invalid("that event made no alert: no screenshot is kept".into()));
        }
        let shot = self.keep_screenshot(b64, &concerns)?;
        let Some(sha) = shot.kept else { return Ok(0) };
        let mut kept = 0;
        for a in &out.alerts {
            if self.store.attach_screenshot(a.id, &sha).await? {
                kept += 1;
                self.store.audit(now, &scope, "alert.screenshot", &format!("alert:{}", a.id), &sha).await?;
            }
        }
        Ok(kept)
    }

    /// Stores findings in one transaction: thresholds, grouping with open
    /// alerts, deadlines, notices, audit, the report and the idempotency key.
    async fn record(&self, at: &At<'_>, excerpt: &str, findings: Vec<Finding>, report: Option<NewReport>) -> Result<Outcome, IngestError> {
        let At { school, person, actor, source, url, received, now, repeats, human, .. } = *at;
        let mut out = Outcome { alerts: Vec::new(), below_threshold: 0, replayed: false, screenshot_wanted: false };
        if findings.is_empty() && report.is_none() && at.key.is_none() {
            return Ok(out);
        }
        let started = std::time::Instant::now();
        let thresholds = self.settings().thresholds.get(school).copied().unwrap_or_default();
        let calendar = self.calendar(school);
        // About a member of staff: the headteacher and IT, never the DSL's queue.
        let audience = crate::incidents::audience(self, school, person).await?;
        let lists = self.lists_for(school, audience, person).await?;
        let _writer = self.lock_person(school, person).await;
        let mut tx = self.store.begin().await?;
        if let Some((scope, key)) = at.key
            && let Some(before) = tx.recall(scope, key).await?
        {
            let mut before: Outcome = serde_json::from_str(&before).unwrap_or(out);
            before.replayed = true;
            return Ok(before);
        }
        let open: Vec<OpenAlert> = if human {
            Vec::new()
        } else {
            tx.open_alerts(school, person)
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
                .collect()
        };
        let mut noticed = false;
        for f in findings {
            if !human && !thresholds.alerts(f.category, f.level) {
                out.below_threshold += 1;
                continue;
            }
            let spans = serde_json::to_string(&f.spans).unwrap_or_else(|_| "[]".into());
            let grouping = if human { Grouping::New } else { haven_alerts::group(&open, school, person, f.category, f.level, received, self.group_window) };
            let occurrence = NewOccurrence {
                at: received,
                level: f.level,
                source: source.to_string(),
                excerpt: f.evidence.unwrap_or_else(|| excerpt.to_string()),
                url: url.map(str::to_string),
                spans,
                explanation: f.explanation,
                screenshot: at.screenshot.and_then(|s| s.kept.clone()),
                screenshot_withheld: at.screenshot.is_some_and(|s| s.withheld),
                repeats,
            };
            match grouping {
                Grouping::Join { id, raise_to } => {
                    let raise = raise_to.map(|l| (l, haven_alerts::due(l, received, &calendar).at()));
                    tx.join_alert(id, &occurrence, raise).await?;
                    tx.audit(now, actor, "alert.join", &format!("alert:{id}"), &format!("level {}", f.level)).await?;
                    if let Some(level) = raise_to {
                        noticed |= queue_notices(&mut tx, id, level, received, &calendar, &lists).await?;
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
                        due_at: haven_alerts::due(f.level, received, &calendar).at(),
                        first: occurrence,
                    };
                    let id = tx.insert_alert(&alert).await?;
                    // A login nobody knows (a typing slip, a stranger's
                    // account) is kept, flagged for the DSL to match, rather
                    // than becoming a pupil of its own.
                    if crate::people::unidentified(&self.settings(), person) {
                        tx.mark_unidentified(id).await?;
                    }
                    tx.set_audience(id, audience).await?;
                    tx.audit(now, actor, "alert.create", &format!("alert:{id}"), &format!("level {}", f.level)).await?;
                    noticed |= queue_notices(&mut tx, id, f.level, received, &calendar, &lists).await?;
                    out.alerts.push(AlertRef { id, category: f.category.name().into(), level: f.level, new: true });
                }
            }
        }
        if let Some(report) = &report {
            let id = tx.insert_report(report).await?;
            if let Some(first) = out.alerts.first() {
                tx.link_report(id, first.id).await?;
            }
            tx.audit(now, actor, &format!("report.{}", report.kind), &format!("report:{id}"), "").await?;
        }
        if let Some((scope, key)) = at.key {
            tx.remember(scope, key, now, &serde_json::to_string(&out).unwrap_or_default()).await?;
        }
        tx.commit().await?;
        if noticed {
            self.outbox_wake.notify_one();
        }
        metrics::histogram!("haven_ingest_seconds").record(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Who is told of an alert with `audience`: a pupil's, the school's
    /// lists ([`Service::lists`]); one about a member of staff, the
    /// headteacher and the IT lead, never the DSLs (who may be the member
    /// of staff, or work beside them); one about the headteacher, the chair
    /// of governors, never the head. The trust's list (its safeguarding
    /// leads, who read every audience) stays for holidays, and stands in
    /// when the school has nobody in those roles. `person`, the login the
    /// alert is about, is never told of it.
    pub async fn lists_for(&self, school: &str, audience: Audience, person: &str) -> Result<Lists, StoreError> {
        let roles: &[Role] = match audience {
            Audience::Pupil => return self.lists(school).await,
            Audience::Staff => &[Role::Headteacher, Role::ItLead],
            Audience::Head => &[Role::ChairOfGovernors],
        };
        let trust_oncall: Vec<Contact> = self.lists(school).await?.trust_oncall;
        let mut people: Vec<Contact> = self
            .store
            .recipients(school, roles, Some(person))
            .await?
            .into_iter()
            .zip(0u32..)
            .map(|((name, email), priority)| Contact { name, address: Address::Email(email), priority })
            .collect();
        if people.is_empty() {
            tracing::warn!(school, audience = audience.as_str(), "nobody at the school may read this alert's audience: the trust's call-out list is told");
            people.clone_from(&trust_oncall);
        }
        Ok(Lists { dsls: people.clone(), school_oncall: people, trust_oncall })
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

/// The categories a classification found, as findings to record.
fn findings(found: &haven_textscan::Classification, excerpt: &str) -> Vec<Finding> {
    found
        .categories
        .iter()
        .map(|f| Finding {
            category: f.category,
            level: f.level,
            spans: found.spans.iter().filter(|s| s.category == f.category && s.end <= excerpt.len()).map(|s| [s.start, s.end]).collect(),
            explanation: found.explanation.clone(),
            evidence: None,
        })
        .collect()
}

/// The messages read together as evidence, one a line with its time on the
/// school's clock ("14:02  saved up my tablets"), and where each message's
/// text starts in it.
fn evidence(messages: &[&crate::window::Message], tz: &jiff::tz::TimeZone) -> (String, Vec<usize>) {
    let mut out = String::new();
    let mut starts = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&m.at.to_zoned(tz.clone()).strftime("%H:%M").to_string());
        out.push_str("  ");
        starts.push(out.len());
        out.push_str(&m.text);
    }
    (out, starts)
}

/// A reading together's spans of `category`, moved from the messages as read
/// (joined by newlines) to where they stand in the evidence; a span across
/// two messages is left out.
fn window_spans(window: &haven_textscan::Classification, category: Concern, texts: &[&str], starts: &[usize]) -> Vec<[usize; 2]> {
    let mut joined = Vec::with_capacity(texts.len());
    let mut at = 0;
    for t in texts {
        joined.push((at, at + t.len()));
        at += t.len() + 1;
    }
    window
        .spans
        .iter()
        .filter(|s| s.category == category)
        .filter_map(|s| {
            let i = joined.iter().position(|&(a, b)| a <= s.start && s.end <= b && s.start < s.end)?;
            let a = joined[i].0;
            Some([s.start - a + starts[i], s.end - a + starts[i]])
        })
        .collect()
}

/// Queues the first notices for an alert at `level` in the event's
/// transaction; whether any is due now (so the worker must be woken).
async fn queue_notices(
    tx: &mut Tx,
    alert: i64,
    level: u8,
    received: Timestamp,
    calendar: &haven_policy::schedule::Calendar,
    lists: &Lists,
) -> Result<bool, StoreError> {
    let mut any = false;
    for n in haven_alerts::notices(level, received, calendar, lists) {
        let (channel, target) = match &n.to.address {
            Address::Email(e) => ("email", e.as_str()),
            Address::Webhook(w) => ("webhook", w.as_str()),
        };
        tx.enqueue(alert, &n.to.name, channel, target, n.at, n.callout).await?;
        any = true;
    }
    Ok(any)
}

/// The host a block page was for (`http://www.games.example/x` →
/// `games.example`), as a request names the site.
fn site_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?.rsplit_once('@').map_or(rest.split(['/', '?', '#']).next()?, |(_, h)| h);
    let host = host.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h);
    let host = host.trim_start_matches("www.").to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
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

    fn seen(person: &str, url: &str, at: Timestamp) -> haven_accesslog::Seen {
        haven_accesslog::Seen { school: Some("oak".into()), person: person.into(), device: None, url: url.into(), at }
    }

    fn search(person: &str, url: &str, terms: &str, at: Timestamp) -> Seen {
        Seen::Search { seen: seen(person, url, at), terms: terms.into() }
    }

    fn blocked(person: &str, url: &str, category: &str, at: Timestamp) -> Seen {
        Seen::Blocked { seen: seen(person, url, at), categories: [haven_policy::Category::from_id(category).unwrap()].into_iter().collect() }
    }

    fn event(text: &str, at: &str) -> Event {
        Event {
            person: "amy.pupil".into(),
            text: text.into(),
            source: "typed".into(),
            url: None,
            observed_at: Some(at.into()),
            screenshot: None,
            title: None,
            idempotency_key: None,
        }
    }

    /// The service's classifier with a phrase that only a reading together
    /// can find: "tablets" ends one message and "friday" is the next.
    fn teach_across_messages(s: &Service) {
        let mut settings = (*s.settings()).clone();
        settings.lexicons.push(haven_textscan::Lexicon::parse("[vulnerable]\n\"my tablets friday\" = 5\n").unwrap());
        settings.classifier = std::sync::Arc::new(haven_textscan::Classifier::new(&settings.lexicons));
        s.reload(settings);
    }

    const SPLIT: [(&str, &str); 3] =
        [("cant do this anymore", "2026-11-24T10:00:00Z"), ("saved up my tablets", "2026-11-24T10:01:30Z"), ("friday", "2026-11-24T10:03:00Z")];

    #[tokio::test]
    async fn a_disclosure_split_over_three_messages_is_read_together_and_shows_all_three() {
        let (s, _dir, device) = service().await;
        teach_across_messages(&s);
        let mut outs = Vec::new();
        for (text, at) in SPLIT {
            outs.push(s.ingest(&device, &event(text, at), at.parse().unwrap()).await.unwrap());
        }
        let last = outs.last().unwrap();
        let alert = last.alerts.iter().find(|a| a.category == "Vulnerable person").unwrap_or_else(|| panic!("{outs:?}"));
        assert!(alert.level >= 4, "{outs:?}");
        let ids: std::collections::BTreeSet<i64> = outs.iter().flat_map(|o| &o.alerts).map(|a| a.id).collect();
        assert_eq!(ids.len(), 1, "one alert: {outs:?}");
        let (dsl, _) =
            s.store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", "2026-11-24T10:04:00Z".parse().unwrap()).await.unwrap();
        let d = s.store.alert_detail(&dsl, alert.id).await.unwrap().unwrap();
        assert_eq!(d.alert.level, alert.level, "raised to the reading's level");
        let shown = d.evidence.last().unwrap();
        assert_eq!(shown.excerpt, "10:00  cant do this anymore\n10:01  saved up my tablets\n10:03  friday", "every message with its time");
        assert!(shown.explanation.starts_with("Read together with 2 earlier messages"), "{}", shown.explanation);
        assert_eq!((shown.at.as_str(), shown.level), ("2026-11-24T10:03:00Z", alert.level));
        // Spans point into the evidence: the words of one message (a phrase
        // across two messages is not highlighted).
        assert!(!shown.spans.is_empty());
        for [a, b] in &shown.spans {
            assert_eq!(&shown.excerpt[*a..*b], "cant do this anymore");
        }
        // The next line re-reads the same messages: not another occurrence.
        let more = s.ingest(&device, &event("ok", "2026-11-24T10:04:00Z"), "2026-11-24T10:04:00Z".parse().unwrap()).await.unwrap();
        assert!(more.alerts.is_empty(), "{more:?}");
        let d = s.store.alert_detail(&dsl, alert.id).await.unwrap().unwrap();
        assert_eq!(d.evidence.len(), 2, "the first line alone, then the three together: {:?}", d.evidence);
    }

    #[tokio::test]
    async fn messages_outside_the_window_or_from_another_pupil_are_not_read_together() {
        let (s, _dir, device) = service().await;
        teach_across_messages(&s);
        let at = |t: &str| -> Timestamp { t.parse().unwrap() };
        let mut outs = Vec::new();
        // Over ten minutes apart.
        for (text, t) in [("cant do this anymore", "2026-11-24T10:00:00Z"), ("saved up my tablets", "2026-11-24T10:20:00Z"), ("friday", "2026-11-24T10:40:00Z")]
        {
            outs.push(s.ingest(&device, &event(text, t), at(t)).await.unwrap());
        }
        // Three pupils, a line each.
        for (person, text) in [("ben.pupil", "cant do this anymore"), ("cat.pupil", "saved up my tablets"), ("dan.pupil", "friday")] {
            let e = Event { person: person.into(), ..event(text, "2026-11-24T11:00:00Z") };
            outs.push(s.ingest(&device, &e, at("2026-11-24T11:00:00Z")).await.unwrap());
        }
        // A page the pupil saw is not their words.
        let page = Event { source: "page".into(), ..event("saved up my tablets", "2026-11-24T12:00:00Z") };
        outs.push(s.ingest(&device, &page, at("2026-11-24T12:00:00Z")).await.unwrap());
        outs.push(s.ingest(&device, &event("friday", "2026-11-24T12:01:00Z"), at("2026-11-24T12:01:00Z")).await.unwrap());
        assert!(outs.iter().flat_map(|o| &o.alerts).all(|a| a.level <= 2), "{outs:?}");
        let (dsl, _) = s.store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", at("2026-11-24T11:00:00Z")).await.unwrap();
        for a in outs.iter().flat_map(|o| &o.alerts) {
            let d = s.store.alert_detail(&dsl, a.id).await.unwrap().unwrap();
            assert!(d.evidence.iter().all(|e| !e.explanation.contains("Read together")), "{:?}", d.evidence);
        }
    }

    #[tokio::test]
    async fn an_everyday_conversation_raises_nothing_and_a_full_window_store_counts_who_it_lets_go() {
        let chat = ["hey are you coming to football later", "cant this week, got a dentist appointment", "ok see you friday then", "bring the ball", "lol yes"];
        let (mut s, _dir, device) = service().await;
        // The rules, and a phrase only a reading together could find.
        teach_across_messages(&s);
        let mut outs = Vec::new();
        for (i, text) in chat.iter().enumerate() {
            let t = format!("2026-11-24T10:0{i}:00Z");
            outs.push(s.ingest(&device, &event(text, &t), t.parse().unwrap()).await.unwrap());
        }
        assert!(outs.iter().all(|o| o.alerts.is_empty()), "{outs:?}");
        s.windows = std::sync::Arc::new(crate::window::Windows::new(crate::window::Limits { people: 2, ..Default::default() }));
        for person in ["a", "b", "c", "d"] {
            let e = Event { person: person.into(), ..event("hello", "2026-11-24T10:00:00Z") };
            s.ingest(&device, &e, "2026-11-24T10:00:00Z".parse().unwrap()).await.unwrap();
        }
        assert_eq!(s.health.windows_evicted.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(s.windows.people(), 2);
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
        let out = s.take(&search("amy.pupil", "http://www.google.com/search?q=x", "how to kill myself painlessly", now), 1, now).await.unwrap();
        assert_eq!(out.alerts[0].category, "Vulnerable person");
        let block = s.take(&blocked("ben.pupil", "http://self-harm.example/", "self-harm", now), 1, now).await.unwrap();
        assert_eq!((block.alerts[0].category.as_str(), block.alerts[0].level), ("Vulnerable person", 3));
        let again = s.take(&blocked("ben.pupil", "http://self-harm.example/2", "self-harm", now), 1, now).await.unwrap();
        assert!(!again.alerts[0].new, "repeat attempts group");
        let games = s.take(&blocked("ben.pupil", "http://games.example/", "games", now), 1, now).await.unwrap();
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

    #[tokio::test]
    async fn every_joined_occurrence_keeps_its_own_text_time_and_screenshot() {
        use base64::Engine as _;
        let (mut s, dir, device) = service().await;
        s.evidence_dir = dir.path().join("evidence");
        let t1 = "2026-11-24T10:00:00Z";
        let t2 = "2026-11-24T10:05:00Z";
        let first = s.ingest(&device, &event("nobody likes you, everyone hates you", t1), t1.parse().unwrap()).await.unwrap();
        let mut e = event("im going to stab you tomorrow after school", t2);
        e.url = Some("https://chat.example/room".into());
        e.screenshot = Some(base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\n the threat"));
        let second = s.ingest(&device, &e, t2.parse().unwrap()).await.unwrap();
        let bully = |o: &Outcome| o.alerts.iter().find(|a| a.category == "Bullying/Violence").cloned().unwrap();
        assert_eq!(bully(&first).id, bully(&second).id, "the threat joins the open alert");
        let (dsl, _) = s.store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", t2.parse().unwrap()).await.unwrap();
        let d = s.store.alert_detail(&dsl, bully(&first).id).await.unwrap().unwrap();
        assert_eq!(d.evidence.len(), 2, "{:?}", d.evidence);
        let threat = &d.evidence[1];
        assert!(threat.excerpt.contains("stab you"), "the second message's own text is kept");
        assert_eq!(threat.at, t2);
        assert_eq!(threat.url.as_deref(), Some("https://chat.example/room"));
        assert!(threat.screenshot.is_some() && d.evidence[0].screenshot.is_none(), "its own screenshot");
        assert!(threat.level >= 3);
    }

    #[tokio::test]
    async fn a_retried_event_with_the_same_idempotency_key_is_stored_once() {
        let (s, _dir, device) = service().await;
        let now = "2026-11-29T02:00:00Z".parse().unwrap();
        let mut e = event("i want to kill myself tonight, i have the pills", "2026-11-29T02:00:00Z");
        e.idempotency_key = Some("phone-42-event-7".into());
        let one = s.ingest(&device, &e, now).await.unwrap();
        let two = s.ingest(&device, &e, now).await.unwrap();
        assert!(!one.replayed && two.replayed);
        assert_eq!(one.alerts, two.alerts, "answered as before");
        let (lead, _) = s.store.add_account("lead@t.example", Role::TrustSafeguardingLead, None, "a long password", now).await.unwrap();
        let d = s.store.alert_detail(&lead, one.alerts[0].id).await.unwrap().unwrap();
        assert_eq!((d.alert.occurrences, d.evidence.len()), (1, 1), "not stored twice");
        assert_eq!(s.store.outbox(now).await.unwrap().len(), 1, "one call-out, not two");
        e.idempotency_key = Some("phone-42-event-8".into());
        assert!(!s.ingest(&device, &e, now).await.unwrap().replayed, "another key is another event");
    }

    #[tokio::test]
    async fn a_public_report_is_classified_on_the_reporters_words_alone_and_never_below_three() {
        let (s, _dir, _device) = service().await;
        let now = "2026-11-24T10:00:00Z".parse().unwrap();
        let words = "A man online has my daughter's photos and says he will send them to everyone unless she sends more tonight";
        let out = s.report("oak", "amy.pupil", words, "Mrs Smith, 07700 900123, mum@example.com", now).await.unwrap();
        assert!(!out.alerts.is_empty());
        assert!(out.alerts.iter().all(|a| a.category != "Oversharer"), "the reporter's phone number is not a concern: {out:?}");
        assert!(out.alerts.iter().all(|a| a.level >= 3), "{out:?}");
        let (dsl, _) = s.store.add_account("dsl@oak.example", Role::Dsl, Some("oak"), "a long password", now).await.unwrap();
        let d = s.store.alert_detail(&dsl, out.alerts[0].id).await.unwrap().unwrap();
        assert!(!d.excerpt.contains("07700") && !d.excerpt.contains("reported by"), "contact details kept apart: {}", d.excerpt);
        assert_eq!(s.store.report_contact(out.alerts[0].id).await.unwrap().as_deref(), Some("Mrs Smith, 07700 900123, mum@example.com"));
        // A report the classifier finds nothing in is still a level-3 concern, whatever the thresholds.
        let calm = s.report("oak", "ben.pupil", "Ben seems different lately, can someone check in with him", "", now).await.unwrap();
        assert_eq!((calm.alerts[0].category.as_str(), calm.alerts[0].level), ("General risk", 3));
        let kept = s.store.reports(Some("public"), 10).await.unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].alert, Some(out.alerts[0].id), "the report is linked to its alert");
    }

    #[tokio::test]
    async fn block_page_reports_reach_the_dsl_or_it_and_are_kept() {
        let (s, _dir, _device) = service().await;
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let cats = |id: &str| [haven_policy::Category::from_id(id).unwrap()].into_iter().collect();
        let worry = Seen::Report {
            seen: seen("amy.pupil", "http://harm.example/", now),
            kind: ReportKind::Worrying,
            reference: "HVN-AAAA-BBBB".into(),
            categories: cats("self-harm"),
            rule: Some("category:self-harm".into()),
            words: String::new(),
        };
        let out = s.take(&worry, 1, now).await.unwrap();
        assert_eq!(out.alerts.len(), 1, "a worry is an alert in the DSL's queue");
        assert!(out.alerts[0].level >= 3 && out.alerts[0].category == "Vulnerable person", "{out:?}");
        let again = s.take(&worry, 1, now).await.unwrap();
        assert!(again.replayed, "a second press of the same page's button is the same report");
        let review = Seen::Report {
            seen: seen("amy.pupil", "http://games.example/", now),
            kind: ReportKind::ShouldBeAllowed,
            reference: "HVN-CCCC-DDDD".into(),
            categories: cats("games"),
            rule: None,
            words: "we need this for computing".into(),
        };
        assert!(s.take(&review, 1, now).await.unwrap().alerts.is_empty(), "for IT, not the DSL");
        let kept = s.store.reports(None, 10).await.unwrap();
        assert_eq!(kept.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["review", "worry"]);
        assert_eq!(kept[0].categories, ["games"]);
        assert_eq!(kept[0].words, "we need this for computing");
        let asked = s.store.filter_changes(&haven_store::changes::ChangeQuery { state: Some("requested".into()), ..Default::default() }).await.unwrap();
        assert_eq!(asked.len(), 1, "the pupil's request waits for the approvers");
        assert_eq!((asked[0].kind.as_str(), asked[0].site.as_deref(), asked[0].for_whom()), ("pupil", Some("games.example"), "user amy.pupil".into()));
        assert!(asked[0].reason.starts_with("we need this for computing"), "{}", asked[0].reason);
        // The pupil's words are read as a report: a disclosure raises its level.
        let told = Seen::Report {
            seen: seen("ben.pupil", "http://x.example/", now),
            kind: ReportKind::Worrying,
            reference: "HVN-EEEE-FFFF".into(),
            categories: cats("games"),
            rule: None,
            words: "i want to kill myself tonight, i have the pills".into(),
        };
        let out = s.take(&told, 1, now).await.unwrap();
        assert!(out.alerts.iter().any(|a| a.level == 5), "{out:?}");
        assert!(!s.store.outbox(now).await.unwrap().is_empty() || s.store.next_notice_due().await.unwrap().is_some(), "someone is told");
    }

    #[tokio::test]
    async fn coalesced_repeats_are_counted_on_the_occurrence() {
        let (s, _dir, _device) = service().await;
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let out = s.take(&blocked("ben.pupil", "http://self-harm.example/", "self-harm", now), 250, now).await.unwrap();
        let (lead, _) = s.store.add_account("lead@t.example", Role::TrustSafeguardingLead, None, "a long password", now).await.unwrap();
        let d = s.store.alert_detail(&lead, out.alerts[0].id).await.unwrap().unwrap();
        assert_eq!((d.alert.occurrences, d.evidence[0].repeats), (250, 250));
        assert!(d.excerpt.contains("250 tries"), "{}", d.excerpt);
    }

    #[tokio::test]
    async fn an_alert_its_audit_and_its_call_out_are_one_transaction() {
        let (s, _dir, device) = service().await;
        let now = "2026-11-29T02:00:00Z".parse().unwrap();
        // Another connection holds the write lock past the busy timeout: the event fails whole.
        let blocker = s.store.begin().await.unwrap();
        let e = event("i want to kill myself tonight, i have the pills", "2026-11-29T02:00:00Z");
        let failed = tokio::time::timeout(std::time::Duration::from_secs(30), s.ingest(&device, &e, now)).await.unwrap();
        assert!(failed.is_err(), "the record was locked");
        drop(blocker);
        let (lead, _) = s.store.add_account("lead@t.example", Role::TrustSafeguardingLead, None, "a long password", now).await.unwrap();
        assert!(s.store.alerts_for(&lead, 10).await.unwrap().is_empty(), "no alert without its notice");
        assert!(s.store.outbox(now).await.unwrap().is_empty());
        // Sent again, it is whole.
        let out = s.ingest(&device, &e, now).await.unwrap();
        assert_eq!(s.store.outbox(now).await.unwrap().len(), 1);
        assert!(s.store.audit_search(Some(&format!("alert:{}", out.alerts[0].id)), None, 10).await.unwrap().iter().any(|a| a.action == "alert.create"));
    }
}
