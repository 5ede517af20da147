//! URL and host canonicalisation for Haven's filter.
//!
//! Every list entry and every request goes through the same functions here, so a
//! list line and a pupil's request meet in one form. The rules follow the Google
//! Safe Browsing / Web Risk canonicalisation (the form in which hashed
//! illegal-content lists are shared), with Haven's additions for hostnames:
//!
//! | input | rule |
//! |---|---|
//! | tab, CR, LF anywhere; spaces around | removed |
//! | `#fragment` | removed |
//! | no scheme (`example.com/x`) | `http` assumed; the scheme is lowercased |
//! | `user:pass@` | removed |
//! | `:port` | kept apart in [`CanonicalUrl::port`] and left out of the canonical text, so `:80`, `:443` and `:8080` all match the same entry |
//! | `%XX` escapes | unescaped repeatedly until none is left, then bytes `<= 0x20`, `>= 0x7f`, `#` and `%` are escaped once (upper-case hex) |
//! | host case, dots | lowercased; leading and trailing dots (the root dot) removed; `..` collapsed |
//! | IPv4 in any form (`3279880203`, `0x7f.1`, octal `0300.0250.1.1`) | dotted decimal |
//! | IPv6 literal `[::1]` | compressed lowercase form in brackets |
//! | Unicode host (`bücher.de`) | IDNA to punycode (`xn--bcher-kva.de`) |
//! | path `//`, `/./`, `/../` | collapsed and resolved; an empty path is `/` |
//! | query | kept, only unescaped and re-escaped |
//!
//! `www.` is not removed here (a request for `www.example.com` is matched by
//! suffix against `example.com`); list import strips a leading `www.` from
//! entries with [`strip_www`], documented there.
//!
//! Architecture invariant: this crate does no I/O and never panics on input;
//! it is fuzzed (`fuzz/`) and property-tested.
#![forbid(unsafe_code)]

mod escape;
mod host;
mod path;

use std::fmt;

pub use escape::{escape, unescape_repeatedly};
pub use host::{HostKind, canonical_host, parse_ipv4};

/// Why a URL or host could not be canonicalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Nothing left after trimming.
    #[error("empty URL or host")]
    Empty,
    /// The host part is missing (`http:///path`).
    #[error("no host in URL")]
    NoHost,
    /// A hostname breaks DNS rules (label over 63 bytes, name over 253, bad character).
    #[error("invalid hostname {host:?}: {why}")]
    InvalidHost {
        /// The host as it was given (escaped for display).
        host: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The port is not a number from 0 to 65535.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
}

/// A URL in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalUrl {
    /// Lowercase scheme, `http` when the input had none.
    pub scheme: String,
    /// Canonical host: lowercase ASCII (punycode), IPv4 dotted decimal or `[ipv6]`.
    pub host: String,
    /// The port if one was written; never part of matching.
    pub port: Option<u16>,
    /// Canonical path, always starting with `/`.
    pub path: String,
    /// Canonical query without the `?`, if there was a `?`.
    pub query: Option<String>,
}

impl CanonicalUrl {
    /// Canonicalises a URL given as bytes (network input need not be UTF-8).
    pub fn parse_bytes(input: &[u8]) -> Result<Self, UrlError> {
        canonicalize_bytes(input)
    }

    /// Canonicalises a URL.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        canonicalize_bytes(input.as_bytes())
    }

    /// `host/path?query`: the form list entries and expressions are matched on.
    pub fn host_path(&self) -> String {
        let mut s = String::with_capacity(self.host.len() + self.path.len() + 8);
        self.write_host_path(&mut s);
        s
    }

    /// Writes `host/path?query` into `out` (cleared first), for callers that reuse a buffer.
    pub fn write_host_path(&self, out: &mut String) {
        out.clear();
        out.push_str(&self.host);
        out.push_str(&self.path);
        if let Some(q) = &self.query {
            out.push('?');
            out.push_str(q);
        }
    }

    /// What kind of host this is.
    pub fn host_kind(&self) -> HostKind {
        HostKind::of(&self.host)
    }

    /// The `host/path` expressions under which hashed lists (IWF and similar) are
    /// looked up, in the Web Risk order: up to five host suffixes (the exact host,
    /// then the last four-to-two labels) times up to six paths (path with query,
    /// path, then `/` and up to four leading path segments ending in `/`).
    pub fn lookup_expressions(&self) -> Vec<String> {
        let hosts = self.expression_hosts();
        let paths = self.expression_paths();
        let mut out = Vec::with_capacity(hosts.len() * paths.len());
        for h in &hosts {
            for p in &paths {
                out.push(format!("{h}{p}"));
            }
        }
        out
    }

    fn expression_hosts(&self) -> Vec<&str> {
        let mut hosts = vec![self.host.as_str()];
        if self.host_kind() != HostKind::Name {
            return hosts;
        }
        let labels: Vec<usize> = std::iter::once(0).chain(self.host.match_indices('.').map(|(i, _)| i + 1)).collect();
        let n = labels.len();
        // Start from the last five labels, skip the exact host (already pushed),
        // and never go down to the top-level domain alone.
        let first = n.saturating_sub(5).max(1);
        for &start in &labels[first..n.saturating_sub(1).max(first)] {
            hosts.push(&self.host[start..]);
        }
        hosts
    }

    fn expression_paths(&self) -> Vec<String> {
        let mut paths = Vec::with_capacity(6);
        if let Some(q) = &self.query {
            paths.push(format!("{}?{q}", self.path));
        }
        paths.push(self.path.clone());
        let mut prefix = String::from("/");
        let mut prefixes = vec![prefix.clone()];
        let segs: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let dir_segs = if self.path.ends_with('/') { segs.len() } else { segs.len().saturating_sub(1) };
        for seg in segs.iter().take(dir_segs.min(3)) {
            prefix.push_str(seg);
            prefix.push('/');
            prefixes.push(prefix.clone());
        }
        for p in prefixes {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
        paths
    }
}

impl fmt::Display for CanonicalUrl {
    /// The Web Risk canonical text: `scheme://host/path?query`, no port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.host, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// Canonicalises a URL given as bytes. See the crate documentation for the rules.
pub fn canonicalize_bytes(input: &[u8]) -> Result<CanonicalUrl, UrlError> {
    let cleaned: Vec<u8> = trim(input).iter().copied().filter(|b| !matches!(b, b'\t' | b'\r' | b'\n')).collect();
    let without_fragment = match cleaned.iter().position(|&b| b == b'#') {
        Some(i) => &cleaned[..i],
        None => &cleaned[..],
    };
    if without_fragment.is_empty() {
        return Err(UrlError::Empty);
    }
    let (scheme, rest) = split_scheme(without_fragment);
    let auth_end = rest.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let after = &rest[auth_end..];
    let (path_raw, query_raw) = match after.iter().position(|&b| b == b'?') {
        Some(i) => (&after[..i], Some(&after[i + 1..])),
        None => (after, None),
    };
    let authority = match authority.iter().rposition(|&b| b == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    let (host_raw, port) = split_port(authority)?;
    let host = host::canonical_host_bytes(host_raw, host::Strictness::Lenient)?;
    let path = path::canonical_path(&unescape_repeatedly(path_raw));
    let query = query_raw.map(|q| escape(&unescape_repeatedly(q)));
    Ok(CanonicalUrl { scheme, host, port, path, query })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c > b' ').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c > b' ').map_or(start, |i| i + 1);
    &b[start..end]
}

fn split_scheme(b: &[u8]) -> (String, &[u8]) {
    if let Some(i) = b.windows(3).position(|w| w == b"://") {
        let scheme = &b[..i];
        if !scheme.is_empty() && scheme.iter().all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c)) {
            return (String::from_utf8_lossy(scheme).to_ascii_lowercase(), &b[i + 3..]);
        }
    }
    ("http".to_string(), b)
}

fn split_port(authority: &[u8]) -> Result<(&[u8], Option<u16>), UrlError> {
    // `[::1]:8080`: the colon after the bracket is the port separator.
    let search_from = if authority.first() == Some(&b'[') { authority.iter().position(|&b| b == b']').unwrap_or(0) } else { 0 };
    match authority[search_from..].iter().rposition(|&b| b == b':') {
        Some(rel) => {
            let i = search_from + rel;
            let digits = &authority[i + 1..];
            if digits.is_empty() {
                return Ok((&authority[..i], None));
            }
            let text = String::from_utf8_lossy(digits).into_owned();
            let port = text.parse::<u16>().map_err(|_| UrlError::InvalidPort(text))?;
            Ok((&authority[..i], Some(port)))
        }
        None => Ok((authority, None)),
    }
}

/// Removes one leading `www.` label from a list entry's host.
///
/// Lists name sites as `www.example.com` and `example.com` interchangeably (hosts
/// files often list only the `www.` form); Haven treats both as the site
/// `example.com`, which covers every subdomain. A bare `www.` + TLD
/// (`www.com`) is left alone, since there the label is the site's name.
pub fn strip_www(host: &str) -> &str {
    match host.strip_prefix("www.") {
        Some(rest) if rest.contains('.') => rest,
        _ => host,
    }
}

/// The suffixes of a hostname at label boundaries, longest first:
/// `a.b.example.com`, `b.example.com`, `example.com`, `com`.
pub fn host_suffixes(host: &str) -> impl Iterator<Item = &str> {
    // A byte loop: hostnames are short, and this runs on every decision.
    let bytes = host.as_bytes();
    std::iter::once(host).chain((0..bytes.len()).filter(move |&i| bytes[i] == b'.').map(move |i| &host[i + 1..]))
}

/// The path prefixes under which URL entries are stored and looked up, at
/// segment boundaries and without a trailing `/`: `/a/b/c` gives `/a`, `/a/b`,
/// `/a/b/c`. The root `/` gives nothing (an entry for `/` is a domain entry).
pub fn segment_prefixes(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.trim_end_matches('/');
    trimmed.match_indices('/').skip(1).map(move |(i, _)| &trimmed[..i]).chain((!trimmed.is_empty()).then_some(trimmed))
}

#[cfg(test)]
mod tests;
