//! One snapshot of everything a reload changes: the config parsed once, one
//! list index, one monitoring classifier (one copy of the model), and each
//! service's settings made from them. A snapshot is built whole before any
//! service sees it, so a broken config builds nothing and the previous
//! snapshot keeps serving; each service then takes its part of the same
//! snapshot, and every answer reads one service's current part once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use haven_config::{Config, DnsSettings, ProxySettings};
use haven_lists::{ListIndex, NoProgress, SourceSpec};
use haven_policy::PolicySet;
use haven_policy::changes::Change;
use haven_textscan::Classifier;

use crate::{classify, config_file, dns, model, web};

/// What a snapshot is built from: a config file, or `--blocklist` files, and
/// which services want their part (with the command line's overrides).
#[derive(Clone, Default)]
pub(crate) struct Recipe {
    /// `--config` (else `$HAVEN_CONFIG`, `./haven.toml`, the embedded demo).
    pub(crate) config: Option<PathBuf>,
    /// `--blocklist` files: no config, one category denied to everyone.
    pub(crate) blocklist: Vec<PathBuf>,
    /// The DNS filter's part, when it runs.
    pub(crate) dns: Option<DnsWants>,
    /// The proxy's part, when it runs.
    pub(crate) proxy: Option<ProxyWants>,
    /// The safeguarding service's part, when it runs.
    pub(crate) web: Option<WebWants>,
}

/// The DNS filter's command-line overrides.
#[derive(Clone, Default)]
pub(crate) struct DnsWants {
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) upstream: Vec<String>,
}

/// The proxy's command-line overrides.
#[derive(Clone, Default)]
pub(crate) struct ProxyWants {
    pub(crate) listen: Vec<SocketAddr>,
    /// `--allow-internal`: ranges added to `[proxy] allow_internal`.
    pub(crate) allow_internal: Vec<ipnet::IpNet>,
}

/// The web app's command-line overrides.
#[derive(Clone, Default)]
pub(crate) struct WebWants {
    pub(crate) listen: Vec<SocketAddr>,
}

/// Everything a reload replaces, built from one parse of the config.
pub(crate) struct Snapshot {
    /// The config (`None` in `--blocklist` mode).
    pub(crate) config: Option<Config>,
    pub(crate) policy: PolicySet,
    /// The one list index, shared by the DNS filter and the proxy.
    pub(crate) lists: Arc<ListIndex>,
    /// The trust's monitoring classifier, shared by the proxy and the safeguarding service.
    pub(crate) classifier: Arc<Classifier>,
    pub(crate) dns: Option<DnsSettings>,
    pub(crate) doh_tokens: HashMap<String, usize>,
    pub(crate) proxy: Option<ProxySettings>,
    pub(crate) safeguard: Option<haven_safeguard::Settings>,
    /// Where the web app listens (config, else `--listen`).
    pub(crate) web_listen: Vec<SocketAddr>,
    pub(crate) data_dir: PathBuf,
    /// Where access logs go (`None`: not logged, as in `--blocklist` mode).
    pub(crate) log_dir: Option<PathBuf>,
    watched: Watched,
    stamp: String,
}

/// The files a snapshot was built from, so a change is noticed by looking
/// at their sizes and times, without parsing anything.
struct Watched {
    lists: Vec<SourceSpec>,
    files: Vec<PathBuf>,
}

impl Watched {
    fn stamp(&self) -> String {
        let mut s = haven_lists::fingerprint(&self.lists);
        for f in &self.files {
            s.push('|');
            s += &dns::config_stamp(f);
        }
        s
    }
}

impl Recipe {
    /// Parses the config once, loads (or compiles) the index once, and makes
    /// every wanted service's part from them.
    pub(crate) fn build(&self) -> Result<Snapshot> {
        if !self.blocklist.is_empty() {
            return self.build_from_blocklists();
        }
        let config = config_file::load(self.config.as_deref())?;
        let lists = Arc::new(config_file::index(&config, &NoProgress)?);
        let (semantic, classifier) = monitoring(&config)?;
        // The filtering checks' key, made owner-only by the filters' first
        // start; read again on every reload.
        let probe_key = if self.dns.is_some() || self.proxy.is_some() { crate::selftest::probe_key(&config.data_dir, true) } else { None };
        let dns = match &self.dns {
            Some(wants) => {
                let mut s = config.dns.clone();
                s.probe_key.clone_from(&probe_key);
                if !wants.listen.is_empty() {
                    s.listen.clone_from(&wants.listen);
                }
                let up = upstreams(&wants.upstream)?;
                if !up.is_empty() {
                    s.upstream = up;
                }
                Some(s)
            }
            None => None,
        };
        let proxy = self.proxy.as_ref().map(|wants| {
            let mut s = config.proxy.clone();
            s.probe_key.clone_from(&probe_key);
            if !wants.listen.is_empty() {
                s.listen.clone_from(&wants.listen);
            }
            s.allow_internal.extend(&wants.allow_internal);
            s
        });
        let mut safeguard = match &self.web {
            Some(_) => Some(web::settings(&config, &classifier, &semantic)?),
            None => None,
        };
        // The web app runs the checks through the filters of this process.
        if let Some(sg) = safeguard.as_mut()
            && (dns.is_some() || proxy.is_some())
        {
            let (doh, proxy_at) = (dns.as_ref().and_then(|d| d.doh_listen), proxy.as_ref().and_then(|p| p.listen.first().copied()));
            sg.checks = Some(Arc::new(crate::selftest::Checks::new(&config, lists.clone(), probe_key.clone(), doh, proxy_at)));
        }
        let web_listen = match &self.web {
            Some(w) if !w.listen.is_empty() => w.listen.clone(),
            _ => config.web_listen.clone(),
        };
        // The trust's own head is watched too: `haven model switch-on` is in
        // force on the next tick.
        let mut files = vec![config.path.clone(), config.proxy.accounts.clone(), model::head_in_force(&config.data_dir)];
        files.extend(config.lexicons.iter().chain(config.school_lexicons.values().flatten()).cloned());
        let watched = Watched { lists: config.lists.clone(), files };
        let stamp = watched.stamp();
        Ok(Snapshot {
            policy: config.policy.clone(),
            lists,
            classifier,
            dns,
            doh_tokens: config.doh_tokens.clone(),
            proxy,
            safeguard,
            web_listen,
            data_dir: config.data_dir.clone(),
            log_dir: Some(config.data_dir.join("logs")),
            watched,
            stamp,
            config: Some(config),
        })
    }

    /// `--blocklist` mode: one group, everyone on any address, one blocked category.
    fn build_from_blocklists(&self) -> Result<Snapshot> {
        let specs = dns::blocklist_specs(&self.blocklist)?;
        let trust = if self.dns.is_some() { "haven dns --blocklist" } else { "haven proxy --blocklist" };
        let (policy, lists) = dns::blocklist_policy(&specs, trust)?;
        let dns = match &self.dns {
            Some(wants) => {
                let mut s = DnsSettings { log: false, ..DnsSettings::default() };
                if !wants.listen.is_empty() {
                    s.listen.clone_from(&wants.listen);
                }
                s.upstream = upstreams(&wants.upstream)?;
                if s.upstream.is_empty() {
                    bail!("--blocklist needs --upstream ADDR: the resolver allowed names are forwarded to");
                }
                Some(s)
            }
            None => None,
        };
        let data_dir = PathBuf::from("haven-data");
        let proxy = self.proxy.as_ref().map(|wants| {
            let mut s = ProxySettings { log: false, ..ProxySettings::defaults(&data_dir) };
            if !wants.listen.is_empty() {
                s.listen.clone_from(&wants.listen);
            }
            s.allow_internal.extend(&wants.allow_internal);
            s
        });
        let watched = Watched { lists: specs, files: Vec::new() };
        let stamp = watched.stamp();
        Ok(Snapshot {
            config: None,
            policy,
            lists: Arc::new(lists),
            classifier: Classifier::shipped_shared(),
            dns,
            doh_tokens: HashMap::new(),
            proxy,
            safeguard: None,
            web_listen: Vec::new(),
            data_dir,
            log_dir: None,
            watched,
            stamp,
        })
    }
}

impl Snapshot {
    /// Whether the files it was built from changed since (sizes and times only).
    pub(crate) fn changed(&self) -> bool {
        self.watched.stamp() != self.stamp
    }

    /// The DNS filter's part, with the record's filtering `changes` on top
    /// of the config's policy.
    pub(crate) fn dns_filter(&self, changes: &[Change]) -> Option<haven_dns::Filter> {
        let settings = self.dns.clone()?;
        let policy = crate::changes::apply(&self.policy, changes);
        Some(haven_dns::Filter { policy, lists: self.lists.clone(), settings, doh_tokens: self.doh_tokens.clone() })
    }

    /// The proxy's part, with the same `changes`.
    pub(crate) fn proxy_filter(&self, changes: &[Change]) -> Option<haven_proxy::Filter> {
        let settings = self.proxy.clone()?;
        let policy = crate::changes::apply(&self.policy, changes);
        Some(haven_proxy::Filter { policy, lists: self.lists.clone(), settings, classifier: self.classifier.clone() })
    }
}

/// The semantic stage and the monitoring classifier of a config: the
/// trust's own head when `<data dir>/model/head.bin` is switched on (a file
/// that cannot be used is logged, naming it and the fix, and the shipped
/// head stays in force), with the shipped and the trust's lexicons.
pub(crate) fn monitoring(config: &Config) -> Result<(Arc<haven_textscan::semantic::Semantic>, Arc<Classifier>)> {
    let (semantic, problem) = model::trust_semantic(&config.data_dir);
    if let Some(p) = problem {
        tracing::error!("{p}");
    }
    if Arc::ptr_eq(&semantic, &haven_textscan::semantic::Semantic::shipped_shared()) {
        return Ok((semantic, classify::monitoring(config)?));
    }
    let lexicons = classify::lexicons(&config.lexicons).context("in [monitoring] lexicons")?;
    let classifier = Classifier::new(&lexicons).with_shared_model(haven_textscan::model::Model::shipped_shared()).with_semantic(Some(semantic.clone()));
    Ok((semantic, Arc::new(classifier)))
}

/// `--upstream` values: `192.0.2.53` or `192.0.2.53:53`.
fn upstreams(given: &[String]) -> Result<Vec<SocketAddr>> {
    given
        .iter()
        .map(|u| {
            u.parse::<SocketAddr>()
                .or_else(|_| u.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .with_context(|| format!("--upstream {u:?}: write an address such as 192.0.2.53 or 192.0.2.53:53"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use haven_textscan::semantic::Semantic;

    use super::*;

    #[test]
    fn a_switched_on_head_is_what_monitoring_and_the_safeguarding_service_read_with() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let path = dir.path().join("haven.toml");
        std::fs::write(&path, format!("trust = \"Test Trust\"\n[data]\ndir = {:?}\n[[school]]\nid = \"a\"\nname = \"School A\"\n[[group]]\nid = \"pupils\"\n[[policy]]\nid = \"pupils\"\n", data.display())).unwrap();
        let recipe = Recipe { config: Some(path), web: Some(WebWants::default()), ..Recipe::default() };
        let before = recipe.build().unwrap();
        let shipped = Semantic::shipped_shared();
        let in_force = |s: &Snapshot| s.safeguard.as_ref().and_then(|g| g.semantic.clone()).expect("the service reads with a semantic stage");
        assert!(Arc::ptr_eq(&in_force(&before), &shipped), "no head of the trust's: the shipped one");
        // `haven model switch-on` puts a head at model/head.bin: the snapshot notices and the next one reads with it.
        let head = model::tests::another_head();
        std::fs::create_dir_all(model::model_dir(&data)).unwrap();
        std::fs::write(model::head_in_force(&data), head.to_bytes()).unwrap();
        assert!(before.changed(), "a new head is a change to reload for");
        let after = recipe.build().unwrap();
        assert_eq!(in_force(&after).head(), &head);
        assert!(!Arc::ptr_eq(&after.classifier, &Classifier::shipped_shared()), "the monitoring classifier is built with it");
        // A damaged head: the snapshot still builds, on the shipped head.
        std::fs::write(model::head_in_force(&data), b"garbage").unwrap();
        let damaged = recipe.build().unwrap();
        assert!(Arc::ptr_eq(&in_force(&damaged), &shipped));
    }
}
