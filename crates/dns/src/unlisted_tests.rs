//! The suggestions counter at the DNS filter's decision: address questions
//! about hosts no list names are counted, other types and a filtering
//! check's probes are not.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use haven_accesslog::Unlisted;
use haven_policy::{CategorySet, PolicySet, Subject, Verdict};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::answer::{self, Filter, Transport};
use crate::{cache, counters, log, upstream};

fn question(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 7;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// A DNS filter with no upstream that counts unlisted hosts.
async fn counting(policy: PolicySet, lists: haven_lists::ListIndex) -> (answer::Shared, Arc<Unlisted>) {
    let settings = haven_config::DnsSettings { log: false, ..Default::default() };
    let shared = answer::Shared {
        filter: ArcSwap::from_pointee(Filter { policy, lists: Arc::new(lists), settings, doh_tokens: Default::default() }),
        cache: Arc::new(cache::Cache::new(100)),
        upstream: Arc::new(upstream::Upstream::new(Vec::new(), Duration::from_millis(1)).await.unwrap()),
        log: log::LogWriter::disabled(),
        sink: None,
        counters: counters::Counters::new(),
        unlisted: OnceLock::new(),
    };
    let unlisted = Arc::new(Unlisted::new(100));
    assert!(shared.unlisted.set(unlisted.clone()).is_ok());
    (shared, unlisted)
}

#[tokio::test]
async fn address_questions_are_counted_and_probes_are_not() {
    let policy = PolicySet::everyone("t", "p", CategorySet::EMPTY, Default::default(), Verdict::Allow);
    let (lists, _) = haven_lists::compile(&[], "", &haven_lists::NoProgress).unwrap();
    let (shared, unlisted) = counting(policy, lists).await;
    let client = "192.0.2.1".parse().unwrap();
    for (name, qtype) in [("www.newsite.example", RecordType::A), ("img.newsite.example", RecordType::AAAA), ("newsite.example", RecordType::TXT)] {
        let _ = answer::prepare(&shared, &question(name, qtype), client, None, None, Transport::Udp);
    }
    let probe = Subject { user: None, group: 0, school: Some(0) };
    let _ = answer::prepare(&shared, &question("probed.example", RecordType::A), client, None, Some(probe), Transport::Udp);
    let d = unlisted.drain();
    assert_eq!(d.hosts.len(), 1, "the probe's name is not counted: {d:?}");
    let h = &d.hosts[0];
    assert_eq!((h.school.as_deref(), h.domain.as_str(), h.hits, h.people), (Some("local"), "newsite.example", 2, 1), "A and AAAA, not TXT");
}

#[tokio::test]
async fn the_words_behind_a_guess_reach_the_suggestions() {
    let mut policy = PolicySet::everyone("t", "p", CategorySet::EMPTY, Default::default(), Verdict::Allow);
    policy.host_model = haven_policy::HostModelSettings { enabled: true, thresholds: vec![(haven_policy::Category::Gambling, 0.5)], off_at: Vec::new() };
    let (lists, _) = haven_lists::compile(&[], "", &haven_lists::NoProgress).unwrap();
    let lists = lists.with_model(Some(haven_hostmodel::shipped_shared().unwrap()));
    let (shared, unlisted) = counting(policy, lists).await;
    let client = "192.0.2.1".parse().unwrap();
    for qtype in [RecordType::A, RecordType::AAAA] {
        let _ = answer::prepare(&shared, &question("www.megacasinobets.example", qtype), client, None, None, Transport::Udp);
    }
    let d = unlisted.drain();
    let guess = d.hosts.first().and_then(|h| h.guess.clone()).expect("the model's guess is kept for IT");
    assert_eq!(guess.category, haven_policy::Category::Gambling, "{guess:?}");
    assert!(guess.evidence.iter().any(|w| w.contains("casino")), "the words behind the guess are found for the queue: {guess:?}");
}
