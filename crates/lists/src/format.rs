//! Reading one line of each list format into an entry, or saying why not.

use haven_url::{CanonicalUrl, canonical_host, strip_www};

/// The formats Haven imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A UT1 / squidGuard directory tree: `<label>/domains`, `<label>/urls`,
    /// `<label>/expressions`.
    Ut1,
    /// A hosts file: `0.0.0.0 name [name…]`.
    Hosts,
    /// One domain per line (a domain covers its subdomains); `||name^` accepted.
    Domains,
    /// One URL per line, scheme optional; matched as a path prefix.
    Urls,
    /// One hex SHA-256 of a canonical URL expression per line (IWF-style).
    Sha256,
    /// One hex MD5 of a canonical URL expression per line.
    Md5,
    /// One regular expression per line, matched against `host/path?query`.
    Expressions,
}

impl Format {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ut1 => "ut1",
            Self::Hosts => "hosts",
            Self::Domains => "domains",
            Self::Urls => "urls",
            Self::Sha256 => "sha256",
            Self::Md5 => "md5",
            Self::Expressions => "expressions",
        }
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A canonical host (no leading `www.`).
    Domain(String),
    /// A canonical `host/path` prefix, stored without a trailing `/`.
    Url { host: String, path: String },
    /// A digest of a canonical URL expression.
    Hash(Vec<u8>),
    /// A regular expression (checked when the index is built).
    Expression(String),
}

/// What a line held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Blank or a comment.
    Skip,
    /// One or more entries (a hosts line may name several).
    Entries(Vec<Entry>),
}

/// Parses one line; `Err` is the reason a person reads next to `file:line`.
pub fn parse_line(format: Format, raw: &str) -> Result<Line, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') || (line.starts_with('!') && format != Format::Expressions) {
        return Ok(Line::Skip);
    }
    let line = match format {
        Format::Expressions => line,
        _ => line.split_once(" #").map_or(line, |(a, _)| a).trim(),
    };
    let one = |e| Ok(Line::Entries(vec![e]));
    match format {
        Format::Domains | Format::Ut1 => {
            let name = line.strip_prefix("||").unwrap_or(line);
            let name = name.strip_suffix('^').unwrap_or(name);
            if name.contains('/') {
                return Err("a URL in a domain list: move it to a URL list".into());
            }
            one(Entry::Domain(domain(name)?))
        }
        Format::Hosts => {
            let mut fields = line.split_whitespace();
            let addr = fields.next().unwrap_or_default();
            if addr.parse::<std::net::IpAddr>().is_err() {
                return Err(format!("expected `ADDRESS NAME`, found {addr:?} where the address should be"));
            }
            let mut entries = Vec::new();
            for name in fields {
                if name.starts_with('#') {
                    break;
                }
                if matches!(name, "localhost" | "localhost.localdomain" | "local" | "broadcasthost" | "ip6-localhost" | "ip6-loopback" | "0.0.0.0") {
                    continue;
                }
                entries.push(Entry::Domain(domain(name)?));
            }
            if entries.is_empty() {
                return Ok(Line::Skip);
            }
            Ok(Line::Entries(entries))
        }
        Format::Urls => one(url(line)?),
        Format::Sha256 => one(Entry::Hash(hex(line, 32)?)),
        Format::Md5 => one(Entry::Hash(hex(line, 16)?)),
        Format::Expressions => one(Entry::Expression(line.to_string())),
    }
}

fn domain(name: &str) -> Result<String, String> {
    let host = canonical_host(name).map_err(|e| e.to_string())?;
    if !host.contains('.') && host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("{host:?} is a single label; a list entry needs a domain such as example.com"));
    }
    Ok(strip_www(&host).to_string())
}

/// A URL entry; an entry for `/` is a domain entry.
fn url(line: &str) -> Result<Entry, String> {
    let u = CanonicalUrl::parse(line).map_err(|e| e.to_string())?;
    let host = domain(&u.host)?;
    let mut path = u.path.trim_end_matches('/').to_string();
    if let Some(q) = &u.query {
        path.push('?');
        path.push_str(q);
    }
    if path.is_empty() { Ok(Entry::Domain(host)) } else { Ok(Entry::Url { host, path }) }
}

fn hex(s: &str, len: usize) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if s.len() != len * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("expected {} hex digits (a {}-byte digest)", len * 2, len));
    }
    Ok((0..len).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(f: Format, s: &str) -> Vec<Entry> {
        match parse_line(f, s).unwrap() {
            Line::Entries(e) => e,
            Line::Skip => vec![],
        }
    }

    #[test]
    fn each_format() {
        assert_eq!(entries(Format::Domains, "  WWW.Example.COM.  # note"), [Entry::Domain("example.com".into())]);
        assert_eq!(entries(Format::Domains, "||ads.example.net^"), [Entry::Domain("ads.example.net".into())]);
        assert_eq!(entries(Format::Hosts, "0.0.0.0 a.example b.example # x"), [Entry::Domain("a.example".into()), Entry::Domain("b.example".into())]);
        assert_eq!(entries(Format::Hosts, "127.0.0.1 localhost"), []);
        assert_eq!(entries(Format::Urls, "itch.io/games/Foo/"), [Entry::Url { host: "itch.io".into(), path: "/games/Foo".into() }]);
        assert_eq!(entries(Format::Urls, "http://example.com/"), [Entry::Domain("example.com".into())]);
        assert_eq!(entries(Format::Md5, "0123456789abcdef0123456789ABCDEF").len(), 1);
        assert_eq!(entries(Format::Domains, "# comment"), []);
        assert_eq!(entries(Format::Domains, ""), []);
        assert_eq!(entries(Format::Domains, "192.168.1.1"), [Entry::Domain("192.168.1.1".into())]);
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse_line(Format::Domains, "bad name.com").unwrap_err().contains("letters, digits"));
        assert!(parse_line(Format::Domains, "localhost").unwrap_err().contains("single label"));
        assert!(parse_line(Format::Domains, "example.com/path").unwrap_err().contains("URL list"));
        assert!(parse_line(Format::Hosts, "example.com").unwrap_err().contains("ADDRESS NAME"));
        assert!(parse_line(Format::Sha256, "abc").unwrap_err().contains("64 hex digits"));
    }
}
