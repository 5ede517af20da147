//! What the DNS filter counts for `/metrics`. The handles are made once per
//! server, so an answer costs an atomic add rather than a registry look-up.

use haven_policy::CategorySet;
use metrics::Counter;

use crate::answer::Transport;

pub(crate) struct Counters {
    udp: Counter,
    tcp: Counter,
    doh: Counter,
    /// UDP questions dropped because too many were in flight.
    udp_shed: Counter,
    shed_total: std::sync::atomic::AtomicU64,
    allow: Counter,
    block: Counter,
    safesearch: Counter,
    canary: Counter,
    refused: Counter,
    servfail: Counter,
    /// Per category (by its number), made at its first block, so a category
    /// never blocked adds no series.
    blocks: Vec<std::sync::OnceLock<Counter>>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        let query = |t: &'static str| metrics::counter!("haven_dns_queries_total", "transport" => t);
        let decision = |a: &'static str| metrics::counter!("haven_decisions_total", "service" => "dns", "action" => a);
        Self {
            udp: query("udp"),
            tcp: query("tcp"),
            doh: query("doh"),
            udp_shed: metrics::counter!("haven_dns_udp_shed_total"),
            shed_total: std::sync::atomic::AtomicU64::new(0),
            allow: decision("allow"),
            block: decision("block"),
            safesearch: decision("safesearch"),
            canary: decision("canary"),
            refused: decision("refused"),
            servfail: decision("servfail"),
            blocks: (0..128).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }

    /// A question arrived.
    pub(crate) fn query(&self, transport: Transport) {
        match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
            Transport::Doh => &self.doh,
        }
        .increment(1);
    }

    /// A UDP question was dropped: too many in flight.
    pub(crate) fn shed(&self) {
        self.udp_shed.increment(1);
        let n = self.shed_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        // Said at the 1st, 2nd, 4th, 8th… time, so a flood does not flood the log.
        if n.is_power_of_two() {
            tracing::warn!(dropped = n, "haven: too many DNS questions over UDP at once; dropping new ones (the clients ask again)");
        }
    }

    /// UDP questions dropped so far.
    pub(crate) fn shed_so_far(&self) -> u64 {
        self.shed_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A question was answered with `action` (the access log's word).
    pub(crate) fn decision(&self, action: &str) {
        let c = match action {
            "allow" => &self.allow,
            "block" => &self.block,
            "safesearch" => &self.safesearch,
            "canary" => &self.canary,
            "refused" => &self.refused,
            "servfail" => &self.servfail,
            _ => return,
        };
        c.increment(1);
    }

    /// A block, counted once under each category that decided it.
    pub(crate) fn blocked(&self, categories: CategorySet) {
        for c in categories.iter() {
            let Some(slot) = self.blocks.get(usize::from(c as u8)) else { continue };
            slot.get_or_init(|| metrics::counter!("haven_blocks_total", "service" => "dns", "category" => c.id())).increment(1);
        }
    }
}
