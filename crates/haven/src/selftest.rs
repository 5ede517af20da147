//! Filtering checks: the built-in probes (an IWF and a CTIRU test entry,
//! adult, gambling, self-harm and circumvention sites, safe search, a
//! profane search), run through the running DNS filter (DoH) and web proxy
//! as one school's group, judged, recorded in the checks log, and told to
//! IT when one fails. `haven selftest` runs them from the command line; the
//! web app and `haven serve`'s schedule run the same [`Checks`] through
//! `haven_safeguard::checks::Prober`.
//!
//! A probe is filtered as the group it names, whatever address it comes
//! from, by a short-lived token signed with `probe.key` in the data folder
//! (see `haven_config::probe`): `haven serve` makes the key, owner-only, and
//! `haven selftest` run as the same user reads it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use haven_config::probe::{KEY_FILE, KEY_LEN, PROBE_USER, ProbeKey};
use haven_config::{Config, ProbeTargets};
use haven_dns::client::{AskError, Observed};
use haven_lists::ListIndex;
use haven_policy::{Action, Category, ListLookup, ListMatch, PolicySet, Request, Subject, decide};
use haven_store::checks::{Outcome, Run};
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{config_file, web};

/// What a profanity probe searches for: swearing a pupil might type, which
/// the search must be made safe for and the classifier must see.
const PROFANE_SEARCH: &str = "fucking porn";
/// How long one question or request may take before the probe says so.
const PATH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The config file `haven serve` runs with (default: $HAVEN_CONFIG, ./haven.toml, else the embedded demo).
    #[arg(long, env = "HAVEN_CONFIG")]
    config: Option<PathBuf>,
    /// Haven's data folder, as given to `haven serve --data` (where the probe key is).
    #[arg(long, env = "HAVEN_DATA")]
    data: Option<PathBuf>,
    /// The school to check as (its id).
    #[arg(long)]
    school: String,
    /// The group to check as (its id).
    #[arg(long)]
    group: String,
    /// One JSON object per probe instead of a line.
    #[arg(long)]
    json: bool,
    /// The DNS-over-HTTPS address to ask, when `haven serve` listens elsewhere than `[dns] doh_listen`.
    #[arg(long)]
    doh: Option<SocketAddr>,
    /// The proxy address to ask, when `haven serve` listens elsewhere than `[proxy] listen`.
    #[arg(long)]
    proxy: Option<SocketAddr>,
}

/// One built-in probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    /// Its name in the log (`iwf`, `safe-search`, …).
    pub name: &'static str,
    /// A host or URL.
    pub target: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The lists must hold the target in this category, and the filters act as the policy says.
    Listed(Category),
    /// Google through DNS and a Google search through the proxy: safe search as the policy says.
    SafeSearch,
    /// A profane Google search through the proxy: made safe, and its words classified.
    Profanity,
}

/// The built-in probes with the config's targets.
pub(crate) fn probes(t: &ProbeTargets) -> Vec<Probe> {
    let listed = |name, target: &String, c| Probe { name, target: target.clone(), kind: Kind::Listed(c) };
    vec![
        listed("iwf", &t.iwf, Category::Csam),
        listed("ctiru", &t.ctiru, Category::Terrorism),
        listed("adult", &t.adult, Category::Adult),
        listed("gambling", &t.gambling, Category::Gambling),
        listed("self-harm", &t.self_harm, Category::SelfHarm),
        listed("circumvention", &t.circumvention, Category::Circumvention),
        Probe { name: "safe-search", target: "www.google.com".into(), kind: Kind::SafeSearch },
        Probe { name: "profanity", target: format!("http://www.google.com/search?q={}", PROFANE_SEARCH.replace(' ', "+")), kind: Kind::Profanity },
    ]
}

/// What a path should show, worked out from the policy and lists (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Haven's block: EDE 15 over DNS, the block page from the proxy.
    Blocked,
    /// Not blocked by Haven.
    Allowed,
    /// DNS: a CNAME to this safe-search name.
    SafeCname(&'static str),
    /// Proxy: forwarded with this parameter (`safe=active`).
    SafeParam(String),
    /// Proxy: made safe with this parameter (if any), and the words classified.
    Classified(Option<String>),
    /// The lists do not hold the target in the probe's category: nothing to test.
    NotListed(Category),
}

impl Expect {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Blocked => "blocked".into(),
            Self::Allowed => "allowed".into(),
            Self::SafeCname(t) => format!("safe search (CNAME {t})"),
            Self::SafeParam(p) => format!("safe search forced ({p})"),
            Self::Classified(Some(p)) => format!("safe search forced ({p}) and the words classified"),
            Self::Classified(None) => "the words classified".into(),
            Self::NotListed(_) => "blocked".into(),
        }
    }
}

/// What the proxy sent back, as the probe reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProxySeen {
    pub status: u16,
    /// `X-Haven-Blocked`: the categories of Haven's block page.
    pub blocked: Option<String>,
    /// `X-Haven-Probe`: what the proxy decided for a probe it did not block.
    pub decided: Option<String>,
    /// `X-Haven-Probe-Forward`: where it would have sent the request.
    pub forward: Option<String>,
    /// `X-Haven-Probe-Concerns`: what the classifier found in the words.
    pub concerns: Option<String>,
}

/// Judges a DNS answer against what was expected: `(got, ok)`. Only
/// Haven's own answer (EDE 15) counts as a block; silence, an upstream's
/// NXDOMAIN or a refusal never pass as one.
pub(crate) fn judge_dns(expect: &Expect, seen: &Result<Observed, String>) -> (String, bool) {
    let o = match seen {
        Ok(o) => o,
        Err(e) => return (format!("no answer: {e}"), false),
    };
    let blocked = o.ede.as_ref().is_some_and(|(code, _)| *code == 15);
    let got = if blocked {
        format!("blocked ({}, EDE 15 {:?})", o.rcode, o.ede.as_ref().map_or("", |e| e.1.as_str()))
    } else if !o.cnames.is_empty() {
        format!("{} with CNAME {}", o.rcode, o.cnames.join(", "))
    } else if o.rcode == "Refused" {
        "refused: this Haven does not know the probe as a school's group".into()
    } else {
        let addrs: Vec<String> = o.addresses.iter().map(ToString::to_string).collect();
        format!("not blocked ({}{}{})", o.rcode, if addrs.is_empty() { "" } else { " " }, addrs.join(" "))
    };
    let ok = match expect {
        Expect::Blocked => blocked,
        Expect::Allowed => !blocked && !got.starts_with("refused"),
        Expect::SafeCname(t) => !blocked && o.cnames.iter().any(|c| c == t),
        Expect::SafeParam(_) | Expect::Classified(_) | Expect::NotListed(_) => false,
    };
    (got, ok)
}

/// Judges the proxy's answer: `(got, ok)`. Only Haven's block page (403
/// with `X-Haven-Blocked`) counts as a block.
pub(crate) fn judge_proxy(expect: &Expect, seen: &Result<ProxySeen, String>) -> (String, bool) {
    let p = match seen {
        Ok(p) => p,
        Err(e) => return (format!("no answer: {e}"), false),
    };
    let blocked = p.status == 403 && p.blocked.is_some();
    let got = if blocked {
        format!("blocked (403 block page: {})", p.blocked.as_deref().unwrap_or_default())
    } else if let Some(d) = &p.decided {
        let mut g = format!("{d} (would forward to {})", p.forward.as_deref().unwrap_or("?"));
        if let Some(c) = p.concerns.as_deref().filter(|c| !c.is_empty()) {
            g += &format!("; words classified: {c}");
        }
        g
    } else if p.status == 407 {
        "refused the probe's sign-in (407): is `haven serve` using the same data folder's probe key?".into()
    } else {
        format!("HTTP {} without Haven's answer", p.status)
    };
    let forwards_with = |param: &str| p.forward.as_deref().is_some_and(|f| f.split(['?', '&']).any(|kv| kv == param));
    let ok = match expect {
        Expect::Blocked => blocked,
        Expect::Allowed => !blocked && p.decided.is_some(),
        Expect::SafeParam(param) => !blocked && p.decided.as_deref() == Some("safesearch") && forwards_with(param),
        Expect::Classified(param) => {
            !blocked && p.decided.is_some() && param.as_deref().is_none_or(forwards_with) && p.concerns.as_deref().is_some_and(|c| !c.is_empty())
        }
        Expect::SafeCname(_) | Expect::NotListed(_) => false,
    };
    (got, ok)
}

fn listed(lists: &dyn ListLookup, request: &Request, category: Category) -> bool {
    let mut found: Vec<ListMatch> = Vec::new();
    lists.lookup(request, &mut found);
    found.iter().any(|m| m.categories.contains(category))
}

/// The proxy's form of a target: a URL over plain HTTP (the proxy decides
/// `https://` on the name alone unless it inspects, and a probe never tunnels).
fn proxy_url(target: &str) -> String {
    let t = target.trim();
    if let Some(rest) = t.strip_prefix("https://") {
        format!("http://{rest}")
    } else if t.starts_with("http://") {
        t.to_string()
    } else {
        format!("http://{t}/")
    }
}

/// What each path of `probe` should show for `who` at `now`: `(dns, proxy)`;
/// the DNS path is `None` for a URL entry, which only the proxy can see.
pub(crate) fn expectations(set: &PolicySet, lists: &dyn ListLookup, who: &Subject, now: Timestamp, probe: &Probe) -> (Option<Expect>, Expect) {
    let Ok(url) = Request::parse(&proxy_url(&probe.target)) else { return (None, Expect::Allowed) };
    let host = Request::Host(url.host().to_string());
    let engine_param = |request: &Request| {
        let eff = set.effective(who);
        let query = request.url().and_then(|u| u.query.clone());
        haven_proxy::search::enforce(haven_policy::safesearch::Engine::Google, eff.safe_search, query.as_deref())
            .and_then(|q| q.split('&').find(|kv| kv.starts_with("safe=")).map(str::to_string))
    };
    match probe.kind {
        Kind::Listed(category) => {
            if !listed(lists, &url, category) {
                return (Some(Expect::NotListed(category)), Expect::NotListed(category));
            }
            let action = |r: &Request| if decide(set, lists, who, now, r).action == Action::Block { Expect::Blocked } else { Expect::Allowed };
            let dns = listed(lists, &host, category).then(|| action(&host));
            (dns, action(&url))
        }
        Kind::SafeSearch => {
            let d = decide(set, lists, who, now, &host);
            let dns = match (d.action, d.safe_search_host) {
                (Action::SafeSearch, Some(t)) => Expect::SafeCname(t),
                (Action::Block, _) => Expect::Blocked,
                _ => Expect::Allowed,
            };
            let search = Request::parse("http://www.google.com/search?q=haven+filtering+check").unwrap_or(url);
            let proxy = match (decide(set, lists, who, now, &search).action, engine_param(&search)) {
                (Action::Block, _) => Expect::Blocked,
                (_, Some(p)) => Expect::SafeParam(p),
                (_, None) => Expect::Allowed,
            };
            (Some(dns), proxy)
        }
        Kind::Profanity => {
            let proxy = if decide(set, lists, who, now, &url).action == Action::Block { Expect::Blocked } else { Expect::Classified(engine_param(&url)) };
            (None, proxy)
        }
    }
}

/// The probes' parts of one snapshot: policy, lists, targets, schedule,
/// where the filters listen, and the key.
pub(crate) struct Checks {
    pub policy: PolicySet,
    pub lists: Arc<ListIndex>,
    pub targets: ProbeTargets,
    pub every: Option<Duration>,
    pub schedule: Vec<(String, String)>,
    pub doh: Option<SocketAddr>,
    pub proxy: Option<SocketAddr>,
    pub key: Option<ProbeKey>,
}

/// Where to reach a listener bound to every address: loopback.
fn reachable(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), a.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), a.port()),
        _ => a,
    }
}

impl Checks {
    /// From a config, its index and key, with the listeners `doh` and `proxy`
    /// (the config's own when `None`).
    pub(crate) fn new(config: &Config, lists: Arc<ListIndex>, key: Option<ProbeKey>, doh: Option<SocketAddr>, proxy: Option<SocketAddr>) -> Self {
        Self {
            policy: config.policy.clone(),
            lists,
            targets: config.filtering_checks.targets.clone(),
            every: config.filtering_checks.every,
            schedule: config.filtering_checks.schedule.clone(),
            doh: doh.or(config.dns.doh_listen).map(reachable),
            proxy: proxy.or_else(|| config.proxy.listen.first().copied()).map(reachable),
            key,
        }
    }

    /// Every probe through every path as `school`'s `group`.
    pub(crate) async fn run(&self, school: &str, group: &str) -> Result<Vec<Outcome>, String> {
        let set = &self.policy;
        let known = |ids: Vec<&str>| ids.join(", ");
        let s = set
            .school(school)
            .ok_or_else(|| format!("no school {school:?} in the config (schools: {})", known(set.schools.iter().map(|s| s.id.as_str()).collect())))?;
        let g = set
            .group(group)
            .ok_or_else(|| format!("no group {group:?} in the config (groups: {})", known(set.groups.iter().map(|g| g.id.as_str()).collect())))?;
        let Some(key) = &self.key else {
            return Err(format!("no probe key: start `haven serve` (it makes {KEY_FILE} in the data folder), and run checks as the user that runs it"));
        };
        let who = Subject { user: None, group: g, school: Some(s) };
        let now = Timestamp::now();
        // One token for the run: it lasts the run and a little more, never longer.
        let token = key.mint(school, group, now, SignedDuration::from_mins(5));
        let mut out = Vec::new();
        for probe in probes(&self.targets) {
            let (dns, proxy) = expectations(set, self.lists.as_ref(), &who, now, &probe);
            let url = proxy_url(&probe.target);
            let host = Request::parse(&url).map(|r| r.host().to_string()).unwrap_or_else(|_| probe.target.clone());
            let mut push = |path: &str, target: &str, expect: &Expect, got: String, ok: bool| {
                out.push(Outcome { probe: probe.name.into(), path: path.into(), target: target.into(), expected: expect.describe(), got, ok });
            };
            if let Some(expect) = dns {
                let (got, ok) = match (&expect, self.doh) {
                    (Expect::NotListed(c), _) => (format!("not listed here: no list gives {host} the category {}", c.id()), false),
                    (_, None) => ("not tested: no [dns] doh_listen, which the probe needs to be filtered as the group".into(), false),
                    (_, Some(addr)) => {
                        let seen = haven_dns::client::ask_doh(addr, &token, &host, PATH_TIMEOUT).await.map_err(|e: AskError| e.to_string());
                        judge_dns(&expect, &seen)
                    }
                };
                push("dns", &host, &expect, got, ok);
            }
            let (got, ok) = match (&proxy, self.proxy) {
                (Expect::NotListed(c), _) => (format!("not listed here: no list gives {} the category {}", probe.target, c.id()), false),
                (_, None) => ("not tested: no [proxy] listen".into(), false),
                (_, Some(addr)) => {
                    let wanted = if probe.kind == Kind::SafeSearch { "http://www.google.com/search?q=haven+filtering+check".to_string() } else { url.clone() };
                    let seen = ask_proxy(addr, &wanted, &token).await;
                    judge_proxy(&proxy, &seen)
                }
            };
            push("proxy", &url, &proxy, got, ok);
        }
        Ok(out)
    }
}

/// One plain-HTTP request through the proxy, signed in as the probe; the
/// answer's status and Haven's headers. Bounded in time and size.
async fn ask_proxy(addr: SocketAddr, url: &str, token: &str) -> Result<ProxySeen, String> {
    use base64::Engine as _;
    let host = url.trim_start_matches("http://").split(['/', '?']).next().unwrap_or_default().to_string();
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{PROBE_USER}:{token}"));
    let request =
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic {creds}\r\nUser-Agent: haven-filtering-check\r\nConnection: close\r\n\r\n");
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("the proxy at {addr}: {e}"))?;
        s.write_all(request.as_bytes()).await.map_err(|e| format!("the proxy at {addr}: {e}"))?;
        let mut buf = Vec::new();
        s.take(256 * 1024).read_to_end(&mut buf).await.map_err(|e| format!("the proxy at {addr}: {e}"))?;
        Ok::<_, String>(buf)
    };
    let bytes = tokio::time::timeout(PATH_TIMEOUT, exchange).await.map_err(|_| format!("the proxy at {addr} did not answer in time"))??;
    let text = String::from_utf8_lossy(&bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("the proxy at {addr} did not answer HTTP"))?;
    let mut seen = ProxySeen { status, ..ProxySeen::default() };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = Some(value.trim().to_string());
        match name.trim().to_ascii_lowercase().as_str() {
            "x-haven-blocked" => seen.blocked = value,
            haven_proxy::probe::PROBE_HEADER => seen.decided = value,
            haven_proxy::probe::PROBE_FORWARD_HEADER => seen.forward = value,
            haven_proxy::probe::PROBE_CONCERNS_HEADER => seen.concerns = value,
            _ => {}
        }
    }
    Ok(seen)
}

impl haven_safeguard::checks::Prober for Checks {
    fn run<'a>(&'a self, school: &'a str, group: &'a str) -> haven_safeguard::checks::Probing<'a> {
        Box::pin(Checks::run(self, school, group))
    }

    fn groups(&self) -> Vec<String> {
        self.policy.groups.iter().map(|g| g.id.clone()).collect()
    }

    fn device_targets(&self) -> Vec<(String, String)> {
        probes(&self.targets)
            .into_iter()
            .filter(|p| matches!(p.kind, Kind::Listed(_)))
            .filter_map(|p| Some((p.name.to_string(), Request::parse(&proxy_url(&p.target)).ok()?.host().to_string())))
            .collect()
    }

    fn schedule(&self) -> (Option<Duration>, Vec<(String, String)>) {
        (self.every, self.schedule.clone())
    }
}

/// The probe key in `data_dir`: read, or (`create`, for `haven serve`) made
/// owner-only the first time. `None`, with the reason logged, when it
/// cannot be had: probes are then refused, and filtering is unchanged.
pub(crate) fn probe_key(data_dir: &Path, create: bool) -> Option<ProbeKey> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match ProbeKey::from_bytes(&bytes) {
            Ok(k) => return Some(k),
            Err(e) => {
                tracing::warn!("haven: {}: {e}", path.display());
                return None;
            }
        },
        Err(e) if e.kind() != std::io::ErrorKind::NotFound || !create => {
            if create || e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("haven: cannot read the filtering checks' key {}: {e} (run checks as the user that runs `haven serve`)", path.display());
            }
            return None;
        }
        Err(_) => {}
    }
    let mut bytes = [0u8; KEY_LEN];
    if getrandom::fill(&mut bytes).is_err() {
        tracing::warn!("haven: no randomness for the filtering checks' key; checks are refused until the next start");
        return None;
    }
    let _ = std::fs::create_dir_all(data_dir);
    let mut opts = std::fs::OpenOptions::new();
    // create_new: two processes starting at once keep one key, the first written.
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&path).and_then(|mut f| std::io::Write::write_all(&mut f, &bytes).and_then(|()| f.sync_all()));
    match written {
        Ok(()) => ProbeKey::from_bytes(&bytes).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => probe_key(data_dir, false),
        Err(e) => {
            tracing::warn!("haven: cannot write the filtering checks' key {}: {e}", path.display());
            None
        }
    }
}

/// `haven selftest`: every probe as `--school`'s `--group` through the
/// running `haven serve`, one line (or JSON object) per probe; recorded in
/// the checks log; IT told of a failure; an error (non-zero exit) when a
/// probe failed.
pub(crate) fn run(args: Args) -> Result<()> {
    if let Some(d) = &args.data {
        config_file::set_data_dir(d);
    }
    let config = config_file::load(args.config.as_deref())?;
    let lists = Arc::new(config_file::index(&config, &haven_lists::NoProgress)?);
    let key = probe_key(&config.data_dir, false);
    if key.is_none() {
        bail!(
            "no filtering checks key at {}: start `haven serve` with this config first (it makes the key), and run `haven selftest` as the same user",
            config.data_dir.join(KEY_FILE).display()
        );
    }
    let checks = Checks::new(&config, lists, key, args.doh, args.proxy);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let at = Timestamp::now();
        let outcomes = checks.run(&args.school, &args.group).await.map_err(anyhow::Error::msg)?;
        for line in summarise(&outcomes) {
            if args.json {
                say!("{}", serde_json::to_string(&line)?);
            } else {
                say!("probe={} ok={} expected={:?} got={:?}", line.probe, line.ok, line.expected, line.got);
            }
        }
        let store = web::open(&config).await?;
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown user".into());
        let run = Run {
            run: haven_safeguard::checks::run_id(at),
            at,
            who: format!("haven selftest ({user})"),
            origin: "command".into(),
            school: args.school.clone(),
            group: args.group.clone(),
            device: None,
        };
        haven_safeguard::checks::record(&store, &run, &outcomes).await.context("recording the checks in the checks log")?;
        store.close().await;
        let failed: Vec<&str> = summarise(&outcomes).into_iter().filter(|l| !l.ok).map(|l| l.probe).collect();
        if !failed.is_empty() {
            bail!("{} of the filtering checks failed ({}); IT has been told (Filtering checks in the web app)", failed.len(), failed.join(", "));
        }
        Ok(())
    })
}

/// One probe's paths as one line: expected and got per path, ok when every path is.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Line<'a> {
    pub probe: &'a str,
    pub target: &'a str,
    pub expected: String,
    pub got: String,
    pub ok: bool,
    pub paths: Vec<&'a Outcome>,
}

pub(crate) fn summarise(outcomes: &[Outcome]) -> Vec<Line<'_>> {
    let mut lines: Vec<Line<'_>> = Vec::new();
    for o in outcomes {
        match lines.iter_mut().find(|l| l.probe == o.probe) {
            Some(l) => l.paths.push(o),
            None => lines.push(Line { probe: &o.probe, target: &o.target, expected: String::new(), got: String::new(), ok: true, paths: vec![o] }),
        }
    }
    for l in &mut lines {
        let expected: Vec<&str> = l.paths.iter().map(|p| p.expected.as_str()).collect();
        l.expected = if expected.windows(2).all(|w| w[0] == w[1]) {
            expected.first().copied().unwrap_or_default().to_string()
        } else {
            l.paths.iter().map(|p| format!("{}: {}", p.path, p.expected)).collect::<Vec<_>>().join("; ")
        };
        l.got = l.paths.iter().map(|p| format!("{}: {}", p.path, p.got)).collect::<Vec<_>>().join("; ");
        l.ok = l.paths.iter().all(|p| p.ok);
    }
    lines
}

#[cfg(test)]
mod tests {
    use haven_policy::NoLists;

    use super::*;

    fn blocked_dns() -> Result<Observed, String> {
        Ok(Observed { rcode: "NXDomain".into(), ede: Some((15, "blocked by Haven (csam; list:iwf)".into())), ..Observed::default() })
    }

    #[test]
    fn only_havens_own_dns_block_passes_as_blocked() {
        assert!(judge_dns(&Expect::Blocked, &blocked_dns()).1);
        // An upstream's NXDOMAIN, a timeout, a refusal: not Haven's block.
        let upstream_nx = Ok(Observed { rcode: "NXDomain".into(), ..Observed::default() });
        assert!(!judge_dns(&Expect::Blocked, &upstream_nx).1);
        assert!(!judge_dns(&Expect::Blocked, &Err("did not answer in time".into())).1);
        let refused = Ok(Observed { rcode: "Refused".into(), ..Observed::default() });
        let (got, ok) = judge_dns(&Expect::Allowed, &refused);
        assert!(!ok && got.starts_with("refused"));
        assert!(!judge_dns(&Expect::Allowed, &blocked_dns()).1, "blocked when it should be allowed");
        let safe = Ok(Observed { rcode: "NoError".into(), cnames: vec!["forcesafesearch.google.com".into()], ..Observed::default() });
        assert!(judge_dns(&Expect::SafeCname("forcesafesearch.google.com"), &safe).1);
        assert!(!judge_dns(&Expect::SafeCname("forcesafesearch.google.com"), &upstream_nx).1);
        assert!(!judge_dns(&Expect::NotListed(Category::Csam), &blocked_dns()).1);
    }

    #[test]
    fn only_the_block_page_passes_as_blocked_through_the_proxy() {
        let page = Ok(ProxySeen { status: 403, blocked: Some("csam".into()), ..ProxySeen::default() });
        assert!(judge_proxy(&Expect::Blocked, &page).1);
        // A 403 from somewhere else, a 502, no connection: not Haven's block.
        assert!(!judge_proxy(&Expect::Blocked, &Ok(ProxySeen { status: 403, ..ProxySeen::default() })).1);
        assert!(!judge_proxy(&Expect::Blocked, &Ok(ProxySeen { status: 502, ..ProxySeen::default() })).1);
        assert!(!judge_proxy(&Expect::Blocked, &Err("connection refused".into())).1);
        let safe = Ok(ProxySeen {
            status: 200,
            decided: Some("safesearch".into()),
            forward: Some("http://www.google.com/search?q=fucking+porn&safe=active".into()),
            concerns: Some("Offensive user:2".into()),
            ..ProxySeen::default()
        });
        assert!(judge_proxy(&Expect::SafeParam("safe=active".into()), &safe).1);
        assert!(!judge_proxy(&Expect::SafeParam("safe=strict".into()), &safe).1);
        assert!(judge_proxy(&Expect::Classified(Some("safe=active".into())), &safe).1);
        let unread = Ok(ProxySeen { concerns: Some(String::new()), ..safe.clone().unwrap() });
        assert!(!judge_proxy(&Expect::Classified(Some("safe=active".into())), &unread).1, "the words must be classified");
        let (got, ok) = judge_proxy(&Expect::Blocked, &Ok(ProxySeen { status: 407, ..ProxySeen::default() }));
        assert!(!ok && got.contains("probe key"));
    }

    #[test]
    fn a_target_no_list_holds_is_not_listed_never_a_pass() {
        let set = PolicySet::everyone("t", "p", haven_policy::CategorySet::all(), Default::default(), haven_policy::Verdict::Block);
        let who = Subject { user: None, group: 0, school: None };
        let now = Timestamp::now();
        let t = ProbeTargets::default();
        for p in probes(&t).iter().filter(|p| matches!(p.kind, Kind::Listed(_))) {
            let (dns, proxy) = expectations(&set, &NoLists, &who, now, p);
            assert!(matches!(proxy, Expect::NotListed(_)), "{p:?}");
            assert!(matches!(dns, Some(Expect::NotListed(_))));
            assert_eq!(Expect::NotListed(Category::Csam).describe(), "blocked");
        }
    }

    #[test]
    fn one_line_per_probe_ok_only_when_every_path_is() {
        let o = |probe: &str, path: &str, ok| Outcome {
            probe: probe.into(),
            path: path.into(),
            target: "x".into(),
            expected: "blocked".into(),
            got: if ok { "blocked".into() } else { "not blocked".into() },
            ok,
        };
        let all = [o("iwf", "dns", true), o("iwf", "proxy", false), o("adult", "dns", true), o("adult", "proxy", true)];
        let lines = summarise(&all);
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].probe, lines[0].ok, lines[0].expected.as_str()), ("iwf", false, "blocked"));
        assert_eq!(lines[0].got, "dns: blocked; proxy: not blocked");
        assert!(lines[1].ok);
        assert_eq!(proxy_url("https://a.example/p"), "http://a.example/p");
        assert_eq!(proxy_url("a.example"), "http://a.example/");
        assert_eq!(reachable("0.0.0.0:53".parse().unwrap()), "127.0.0.1:53".parse().unwrap());
    }

    #[test]
    fn the_key_is_made_owner_only_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe_key(dir.path(), false).is_none(), "selftest never makes one");
        let made = probe_key(dir.path(), true).unwrap();
        assert_eq!(probe_key(dir.path(), true).unwrap(), made, "kept, not replaced");
        assert_eq!(probe_key(dir.path(), false).unwrap(), made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
