//! One question, one answer: identify the client, decide through the policy
//! engine, and answer by the decision (forward, block, safe search).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use haven_config::{BlockAnswer, DnsSettings};
use haven_lists::ListIndex;
use haven_policy::{Action, Decision, ListLookup, PolicySet, Request, Subject, decide};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{RData, Record, RecordType};
use jiff::Timestamp;

use crate::cache::Cache;
use crate::log::{LogWriter, QueryLog};
use crate::upstream::{Upstream, UpstreamError};
use crate::wire::{self, Ede, Question, Reject};

/// Everything a DNS answer depends on that a reload replaces at once.
pub struct Filter {
    /// The trust's policies.
    pub policy: PolicySet,
    /// The compiled lists (one index per snapshot, shared with the proxy).
    pub lists: Arc<ListIndex>,
    /// The `[dns]` settings (listen addresses and upstreams take effect on restart).
    pub settings: DnsSettings,
    /// DoH token → device index.
    pub doh_tokens: HashMap<String, usize>,
}

/// How the question arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// DNS-over-HTTPS (RFC 8484).
    Doh,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Doh => "doh",
        }
    }
}

pub(crate) struct Shared {
    pub(crate) filter: ArcSwap<Filter>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) log: Arc<LogWriter>,
    pub(crate) sink: Option<Arc<dyn haven_accesslog::Sink>>,
    pub(crate) counters: crate::counters::Counters,
    /// Hosts no list names, for IT's suggestions; set once by `haven serve`.
    pub(crate) unlisted: std::sync::OnceLock<Arc<haven_accesslog::Unlisted>>,
}

/// Names that tell software to stop doing its own DNS: answered NXDOMAIN so
/// browsers keep using the school's resolver (Firefox's DoH canary, Apple's
/// iCloud Private Relay).
const CANARIES: &[&str] = &["use-application-dns.net", "mask.icloud.com", "mask-h2.icloud.com"];

/// An encoded answer, and the smallest TTL in it (DoH's Cache-Control).
pub(crate) struct Answer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ttl: u32,
}

/// A question the policy has decided, waiting for the upstream.
pub(crate) struct Pending {
    q: Question,
    filter: Arc<Filter>,
    log: Option<QueryLog>,
    start: Instant,
    udp: bool,
    /// `None`: forward the question; `Some(target)`: safe search via `target`.
    safe_search: Option<&'static str>,
}

/// What a packet needs.
pub(crate) enum Prepared {
    /// Send nothing.
    Nothing,
    /// The answer, ready now: a block, a cache hit, an error.
    Ready(Answer),
    /// An answer that needs the upstream.
    Pending(Box<Pending>),
}

/// Everything that can be done without waiting: parse, identify, decide, and
/// answer from policy or cache. Most answers finish here, with no task spawned.
/// `probe`: a filtering check's probe, decided as the school and group its
/// token names, never told to the safeguarding service, and marked in the log.
pub(crate) fn prepare(shared: &Shared, packet: &[u8], client: IpAddr, device: Option<usize>, probe: Option<Subject>, transport: Transport) -> Prepared {
    let start = Instant::now();
    let q = match wire::parse(packet) {
        Ok(q) => q,
        Err(Reject::Answer(bytes)) => return Prepared::Ready(Answer { bytes, ttl: 0 }),
        Err(Reject::Drop) => return Prepared::Nothing,
    };
    let filter = shared.filter.load_full();
    let udp = transport == Transport::Udp;
    // The log entry is only built when someone will read it.
    let mut log = filter.settings.log.then(|| QueryLog {
        time: String::new(),
        client: client.to_string(),
        device: device.map(|d| filter.policy.devices[d].id.clone()),
        user: None,
        group: None,
        school: None,
        name: q.name.clone(),
        qtype: q.qtype.to_string(),
        action: String::new(),
        categories: Vec::new(),
        rule: None,
        transport: transport.as_str().into(),
        micros: 0,
        probe: probe.is_some(),
        ..Default::default()
    });
    let Some(who) = probe.or_else(|| identify(&filter, client, device)) else {
        let m = wire::response(&q, ResponseCode::Refused, vec![], vec![], None);
        return Prepared::Ready(done(shared, &q, &m, udp, log, "refused", start));
    };
    let set = &filter.policy;
    if let Some(e) = log.as_mut() {
        e.user = who.user.map(|u| set.users[u].id.clone());
        e.group = Some(set.groups[who.group].id.clone());
        e.school = who.school.map(|s| set.schools[s].id.clone());
    }
    if CANARIES.contains(&q.name.as_str()) {
        let m = wire::response(&q, ResponseCode::NXDomain, vec![], vec![], None);
        return Prepared::Ready(done(shared, &q, &m, udp, log, "canary", start));
    }
    let d = decide(set, &filter.lists, &who, Timestamp::now(), &Request::Host(q.name.clone()));
    // One visit asks A and AAAA (and more); only the address questions count.
    if let Some(u) = shared.unlisted.get().filter(|_| probe.is_none() && matches!(q.qtype, RecordType::A | RecordType::AAAA)) {
        u.decision(who.school.map(|s| set.schools[s].id.as_str()), &q.name, who.user.ok_or(client), &d, Timestamp::now(), |g| {
            filter.lists.explain_guess(&Request::Host(q.name.clone()), g);
        });
    }
    let needs_rule = log.is_some() || d.action == Action::Block;
    let rule = if needs_rule { d.rule_id(set, &who) } else { String::new() };
    if let Some(e) = log.as_mut() {
        e.categories = d.categories.iter().map(|c| c.id().to_string()).collect();
        e.rule = Some(rule.clone());
    }
    let now = Instant::now();
    match d.action {
        Action::Block => {
            shared.counters.blocked(if d.decisive.is_empty() { d.categories } else { d.decisive });
            // A probe's block is the check working, not a pupil's attempt.
            if let Some(sink) = shared.sink.as_ref().filter(|_| probe.is_none()) {
                let cats = if d.decisive.is_empty() { d.categories } else { d.decisive };
                let seen = haven_accesslog::Seen {
                    school: who.school.map(|s| set.schools[s].id.clone()),
                    person: who.user.map_or_else(|| format!("device at {client}"), |u| set.users[u].id.clone()),
                    device: None,
                    url: q.name.clone(),
                    at: jiff::Timestamp::now(),
                };
                sink.tell(haven_accesslog::Finding::Blocked { seen, categories: cats });
            }
            let m = blocked(&q, &d, &filter.settings, &rule);
            Prepared::Ready(done(shared, &q, &m, udp, log, "block", start))
        }
        Action::SafeSearch => {
            let target = d.safe_search_host.unwrap_or_default();
            let wants_addresses = matches!(q.qtype, RecordType::A | RecordType::AAAA);
            let cached = wire::synthetic_question(target, q.qtype, &q).and_then(|tq| shared.cache.lookup(&tq, now));
            if wants_addresses && cached.is_none() {
                return Prepared::Pending(Box::new(Pending { q, filter, log, start, udp, safe_search: Some(target) }));
            }
            let m = safe_search(&q, target, filter.settings.block_ttl, cached.filter(|_| wants_addresses).as_deref(), now);
            Prepared::Ready(done(shared, &q, &m, udp, log, "safesearch", start))
        }
        Action::Allow => match shared.cache.lookup(&q, now) {
            Some(e) => {
                let (answers, authorities) = e.aged(now);
                let m = wire::response(&q, e.rcode, answers, authorities, None);
                Prepared::Ready(done(shared, &q, &m, udp, log, "allow", start))
            }
            None => Prepared::Pending(Box::new(Pending { q, filter, log, start, udp, safe_search: None })),
        },
    }
}

/// Asks the upstream (through the cache, coalesced) and answers; `None`
/// (send nothing) for a UDP question the upstream had no room for, which
/// the client asks again, as of an overloaded resolver.
pub(crate) async fn finish(shared: &Shared, p: Box<Pending>) -> Option<Answer> {
    let Pending { q, filter, log, start, udp, safe_search: target } = *p;
    if let Some(target) = target {
        let tq = wire::synthetic_question(target, q.qtype, &q);
        let entry = match tq {
            Some(tq) => shared.cache.resolve(&shared.upstream, &tq).await.ok(),
            None => None,
        };
        let m = safe_search(&q, target, filter.settings.block_ttl, entry.as_deref(), Instant::now());
        return Some(done(shared, &q, &m, udp, log, "safesearch", start));
    }
    Some(match shared.cache.resolve(&shared.upstream, &q).await {
        Ok(e) => {
            let (answers, authorities) = e.aged(Instant::now());
            let m = wire::response(&q, e.rcode, answers, authorities, None);
            done(shared, &q, &m, udp, log, "allow", start)
        }
        Err(UpstreamError::Busy) if udp => return None,
        Err(err) => {
            let text = err.to_string();
            let m = wire::response(&q, ResponseCode::ServFail, vec![], vec![], Some((Ede::NoReachableAuthority, text.as_str())));
            done(shared, &q, &m, udp, log, "servfail", start)
        }
    })
}

/// Answers one packet; `None` means send nothing.
pub(crate) async fn answer(shared: &Shared, packet: &[u8], client: IpAddr, device: Option<usize>, transport: Transport) -> Option<Answer> {
    answer_as(shared, packet, client, device, None, transport).await
}

/// [`answer`], for a filtering check's probe when `probe` is given.
pub(crate) async fn answer_as(
    shared: &Shared,
    packet: &[u8],
    client: IpAddr,
    device: Option<usize>,
    probe: Option<Subject>,
    transport: Transport,
) -> Option<Answer> {
    match prepare(shared, packet, client, device, probe, transport) {
        Prepared::Nothing => None,
        Prepared::Ready(a) => Some(a),
        Prepared::Pending(p) => finish(shared, p).await,
    }
}

/// Encodes the answer and logs the query.
fn done(shared: &Shared, q: &Question, m: &hickory_proto::op::Message, udp: bool, log: Option<QueryLog>, action: &str, start: Instant) -> Answer {
    shared.counters.decision(action);
    let ttl = m.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
    let bytes = wire::encode(m, q, udp);
    if let Some(mut e) = log {
        e.action = action.into();
        e.time = Timestamp::now().to_string();
        e.micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared.log.log(e);
    }
    Answer { bytes, ttl }
}

/// The school and group a DoH path's probe token names (`/dns-query/probe.…`),
/// when this Haven's key signed it and it has not expired; `None` otherwise,
/// so a bad token is refused exactly like an unknown device token.
pub(crate) fn probe_subject(filter: &Filter, token: &str, now: Timestamp) -> Option<Subject> {
    if !token.starts_with(haven_config::probe::TOKEN_PREFIX) {
        return None;
    }
    let key = filter.settings.probe_key.as_ref()?;
    match key.verify(token, now) {
        Ok(claim) => {
            let set = &filter.policy;
            Some(Subject { user: None, group: set.group(&claim.group)?, school: Some(set.school(&claim.school)?) })
        }
        Err(e) => {
            tracing::debug!("DoH: a filtering check's probe token was refused: {e}");
            None
        }
    }
}

fn identify(filter: &Filter, client: IpAddr, device: Option<usize>) -> Option<Subject> {
    let set = &filter.policy;
    let device = device.map(|d| set.devices[d].id.as_str());
    set.identify(None, device, Some(client)).or_else(|| filter.settings.default_group.map(|group| Subject { user: None, group, school: None }))
}

fn blocked(q: &Question, d: &Decision, settings: &DnsSettings, rule: &str) -> hickory_proto::op::Message {
    let cats: Vec<&str> = d.decisive.iter().chain(d.categories.iter()).map(|c| c.id()).collect();
    let text = format!("blocked by Haven ({}; {rule})", cats.first().copied().unwrap_or("policy"));
    let ede = Some((Ede::Blocked, text.as_str()));
    let owner = q.query.name().clone();
    let record = |data| Record::from_rdata(owner.clone(), settings.block_ttl, data);
    match (settings.block, q.qtype) {
        (BlockAnswer::BlockPage, RecordType::A) => wire::response(q, ResponseCode::NoError, vec![record(RData::A(A(settings.block_page_ipv4)))], vec![], ede),
        (BlockAnswer::BlockPage, RecordType::AAAA) => {
            wire::response(q, ResponseCode::NoError, vec![record(RData::AAAA(AAAA(settings.block_page_ipv6)))], vec![], ede)
        }
        (BlockAnswer::BlockPage, _) => wire::response(q, ResponseCode::NoError, vec![], vec![], ede),
        (BlockAnswer::NxDomain, _) => wire::response(q, ResponseCode::NXDomain, vec![], vec![], ede),
    }
}

/// A CNAME to the engine's safe-search name, with that name's addresses in
/// the same answer (stub resolvers do not chase CNAMEs themselves).
fn safe_search(q: &Question, target: &str, ttl: u32, target_answer: Option<&crate::cache::Entry>, now: Instant) -> hickory_proto::op::Message {
    let Some(target_name) = wire::name(target) else {
        return wire::response(q, ResponseCode::ServFail, vec![], vec![], None);
    };
    let mut answers = vec![Record::from_rdata(q.query.name().clone(), ttl, RData::CNAME(CNAME(target_name)))];
    if let Some(e) = target_answer {
        answers.extend(e.aged(now).0);
    }
    wire::response(q, ResponseCode::NoError, answers, vec![], None)
}
