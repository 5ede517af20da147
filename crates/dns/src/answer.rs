//! One question, one answer: identify the client, decide through the policy
//! engine, and answer by the decision (forward, block, safe search).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use haven_config::{BlockAnswer, DnsSettings};
use haven_lists::ListIndex;
use haven_policy::{Action, Decision, PolicySet, Request, Subject, decide};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{RData, Record, RecordType};
use jiff::Timestamp;

use crate::cache::Cache;
use crate::log::{LogWriter, QueryLog};
use crate::upstream::Upstream;
use crate::wire::{self, Ede, Question, Reject};

/// Everything a DNS answer depends on that a reload replaces at once.
pub struct Filter {
    /// The trust's policies.
    pub policy: PolicySet,
    /// The compiled lists.
    pub lists: ListIndex,
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

/// Answers one packet; `None` means send nothing.
pub(crate) async fn answer(shared: &Shared, packet: &[u8], client: IpAddr, device: Option<usize>, transport: Transport) -> Option<Answer> {
    let start = Instant::now();
    let q = match wire::parse(packet) {
        Ok(q) => q,
        Err(Reject::Answer(bytes)) => return Some(Answer { bytes, ttl: 0 }),
        Err(Reject::Drop) => return None,
    };
    let filter = shared.filter.load_full();
    let udp = transport == Transport::Udp;
    let mut entry = QueryLog {
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
    };
    let (message, action) = match identify(&filter, client, device) {
        None => (wire::response(&q, ResponseCode::Refused, vec![], vec![], None), "refused"),
        Some(who) => {
            let set = &filter.policy;
            entry.user = who.user.map(|u| set.users[u].id.clone());
            entry.group = Some(set.groups[who.group].id.clone());
            entry.school = who.school.map(|s| set.schools[s].id.clone());
            if CANARIES.contains(&q.name.as_str()) {
                (wire::response(&q, ResponseCode::NXDomain, vec![], vec![], None), "canary")
            } else {
                let now = Timestamp::now();
                let d = decide(set, &filter.lists, &who, now, &Request::Host(q.name.clone()));
                entry.categories = d.categories.iter().map(|c| c.id().to_string()).collect();
                entry.rule = Some(d.rule_id(set, &who));
                match d.action {
                    Action::Block => (blocked(&q, &d, &filter.settings, entry.rule.as_deref().unwrap_or_default()), "block"),
                    Action::SafeSearch => (safe_search(shared, &q, &d, filter.settings.block_ttl).await, "safesearch"),
                    Action::Allow => forward(shared, &q).await,
                }
            }
        }
    };
    let ttl = message.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
    let bytes = wire::encode(&message, &q, udp);
    if filter.settings.log {
        entry.action = action.into();
        entry.time = Timestamp::now().to_string();
        entry.micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        shared.log.log(entry);
    }
    Some(Answer { bytes, ttl })
}

fn identify(filter: &Filter, client: IpAddr, device: Option<usize>) -> Option<Subject> {
    let set = &filter.policy;
    if let Some(d) = device {
        let dev = &set.devices[d];
        return Some(match dev.owner {
            Some(owner) => {
                let mut s = set.subject_for_user(owner);
                s.school = s.school.or(Some(dev.school));
                s
            }
            None => Subject { user: None, group: dev.group, school: Some(dev.school) },
        });
    }
    set.identify(None, None, Some(client))
        .or_else(|| filter.settings.default_group.map(|group| Subject { user: None, group, school: None }))
}

fn blocked(q: &Question, d: &Decision, settings: &DnsSettings, rule: &str) -> hickory_proto::op::Message {
    let cats: Vec<&str> = d.decisive.iter().chain(d.categories.iter()).map(|c| c.id()).collect();
    let text = format!("blocked by Haven ({}; {rule})", cats.first().copied().unwrap_or("policy"));
    let ede = Some((Ede::Blocked, text.as_str()));
    let owner = q.query.name().clone();
    let record = |data| Record::from_rdata(owner.clone(), settings.block_ttl, data);
    match (settings.block, q.qtype) {
        (BlockAnswer::BlockPage, RecordType::A) => {
            wire::response(q, ResponseCode::NoError, vec![record(RData::A(A(settings.block_page_ipv4)))], vec![], ede)
        }
        (BlockAnswer::BlockPage, RecordType::AAAA) => {
            wire::response(q, ResponseCode::NoError, vec![record(RData::AAAA(AAAA(settings.block_page_ipv6)))], vec![], ede)
        }
        (BlockAnswer::BlockPage, _) => wire::response(q, ResponseCode::NoError, vec![], vec![], ede),
        (BlockAnswer::NxDomain, _) => wire::response(q, ResponseCode::NXDomain, vec![], vec![], ede),
    }
}

/// A CNAME to the engine's safe-search name, with that name's addresses in
/// the same answer (stub resolvers do not chase CNAMEs themselves).
async fn safe_search(shared: &Shared, q: &Question, d: &Decision, ttl: u32) -> hickory_proto::op::Message {
    let target = d.safe_search_host.unwrap_or_default();
    let Some(target_name) = wire::name(target) else {
        return wire::response(q, ResponseCode::ServFail, vec![], vec![], None);
    };
    let mut answers = vec![Record::from_rdata(q.query.name().clone(), ttl, RData::CNAME(CNAME(target_name)))];
    if matches!(q.qtype, RecordType::A | RecordType::AAAA)
        && let Some(tq) = wire::synthetic_question(target, q.qtype, q)
        && let Ok(e) = shared.cache.resolve(&shared.upstream, &tq).await
    {
        answers.extend(e.aged(Instant::now()).0);
    }
    wire::response(q, ResponseCode::NoError, answers, vec![], None)
}

async fn forward(shared: &Shared, q: &Question) -> (hickory_proto::op::Message, &'static str) {
    match shared.cache.resolve(&shared.upstream, q).await {
        Ok(e) => {
            let (answers, authorities) = e.aged(Instant::now());
            (wire::response(q, e.rcode, answers, authorities, None), "allow")
        }
        Err(err) => {
            let text = err.to_string();
            (wire::response(q, ResponseCode::ServFail, vec![], vec![], Some((Ede::NoReachableAuthority, text.as_str()))), "servfail")
        }
    }
}
