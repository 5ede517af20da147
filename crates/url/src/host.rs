//! Hostnames: case, dots, IP literals in every form, IDNA.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::UrlError;
use crate::escape::{escape, unescape_repeatedly};

/// What a canonical host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A DNS name.
    Name,
    /// An IPv4 address in dotted decimal.
    Ipv4,
    /// An IPv6 address in brackets.
    Ipv6,
}

impl HostKind {
    /// Classifies a host that is already canonical.
    pub fn of(host: &str) -> Self {
        if host.starts_with('[') {
            Self::Ipv6
        } else if host.parse::<Ipv4Addr>().is_ok() {
            Self::Ipv4
        } else {
            Self::Name
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// URL hosts: anything is accepted and escaped, as Web Risk does.
    Lenient,
    /// List entries and DNS names: must be a valid hostname or IP.
    Strict,
}

/// Canonicalises a bare hostname (a list entry, a DNS question): lowercase, no
/// root dot, punycode, IPv4 dotted decimal. Rejects what cannot be a hostname,
/// so a corrupt list line is reported rather than matched.
pub fn canonical_host(input: &str) -> Result<String, UrlError> {
    let trimmed = input.trim();
    let trimmed = trimmed.strip_prefix("*.").unwrap_or(trimmed);
    canonical_host_bytes(trimmed.as_bytes(), Strictness::Strict)
}

pub(crate) fn canonical_host_bytes(raw: &[u8], strictness: Strictness) -> Result<String, UrlError> {
    // Fast path: most list entries and queries are already canonical names.
    if is_plain_name(raw) {
        // Safe: is_plain_name accepts ASCII only.
        return Ok(String::from_utf8(raw.to_vec()).unwrap_or_default());
    }
    // Only a literal bracket opens an IPv6 address; an escaped one (`%5B`) is
    // just a byte of a strange name, as canonical text writes it.
    if raw.first() == Some(&b'[') {
        return ipv6_literal(raw);
    }
    let unescaped = unescape_repeatedly(raw);
    let mut bytes: Vec<u8> = Vec::with_capacity(unescaped.len());
    for &b in &unescaped {
        if b == b'.' && (bytes.is_empty() || bytes.last() == Some(&b'.')) {
            continue;
        }
        bytes.push(b.to_ascii_lowercase());
    }
    while bytes.last() == Some(&b'.') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(if raw.is_empty() { UrlError::NoHost } else { UrlError::Empty });
    }
    if let Some(ip) = parse_ipv4(&bytes) {
        return Ok(ip.to_string());
    }
    let ascii = if bytes.is_ascii() {
        // Safe: checked ASCII just above.
        String::from_utf8(bytes).unwrap_or_default()
    } else {
        // IDNA mapping can produce text that is no hostname (`¾` maps to `3⁄4`
        // and a stray `%` survives): only a valid name is taken.
        match std::str::from_utf8(&bytes).ok().and_then(|s| idna::domain_to_ascii(s).ok()) {
            // Mapping can also make dots (`。`) or digits: read the result again as ASCII.
            Some(a) if !a.is_empty() && a.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)) => {
                return canonical_host_bytes(a.as_bytes(), strictness);
            }
            _ if strictness == Strictness::Lenient => return Ok(escape_host(&bytes)),
            _ => return Err(invalid(&bytes, "not a valid internationalised name")),
        }
    };
    // As browsers do, an IDNA result can still be an address (`1¹` maps to `11`).
    if let Some(ip) = parse_ipv4(ascii.as_bytes()) {
        return Ok(ip.to_string());
    }
    match strictness {
        Strictness::Lenient => Ok(escape_host(ascii.as_bytes())),
        Strictness::Strict => validate_name(&ascii).map(|()| ascii),
    }
}

/// Lowercase LDH labels (with `_`) of 1–63 bytes, at least one letter in the
/// last label and no `0x` before it (so never an IPv4 form), no empty label:
/// already canonical.
fn is_plain_name(raw: &[u8]) -> bool {
    if raw.is_empty() || raw.len() > 253 {
        return false;
    }
    let mut label_len = 0usize;
    let mut last_has_letter = false;
    for &b in raw {
        match b {
            b'a'..=b'z' => {
                label_len += 1;
                last_has_letter = true;
            }
            b'0'..=b'9' | b'-' | b'_' => label_len += 1,
            b'.' => {
                if label_len == 0 {
                    return false;
                }
                label_len = 0;
                last_has_letter = false;
            }
            _ => return false,
        }
        if label_len > 63 {
            return false;
        }
    }
    // `0x7f000001` has letters but is an address (inet_aton's hex form).
    let last = raw.rsplit(|&b| b == b'.').next().unwrap_or_default();
    label_len > 0 && last_has_letter && !last.starts_with(b"0x")
}

fn ipv6_literal(b: &[u8]) -> Result<String, UrlError> {
    let inner = b.strip_prefix(b"[").and_then(|r| r.strip_suffix(b"]"));
    let addr =
        inner.and_then(|i| std::str::from_utf8(i).ok()).and_then(|s| s.parse::<Ipv6Addr>().ok()).ok_or_else(|| invalid(b, "not a valid IPv6 address"))?;
    Ok(format!("[{addr}]"))
}

fn invalid(b: &[u8], why: &'static str) -> UrlError {
    UrlError::InvalidHost { host: escape(b), why }
}

fn validate_name(name: &str) -> Result<(), UrlError> {
    if name.len() > 253 {
        return Err(invalid(name.as_bytes(), "longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.len() > 63 {
            return Err(invalid(name.as_bytes(), "a label is longer than 63 characters"));
        }
        if !label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            return Err(invalid(name.as_bytes(), "only letters, digits, '-' and '_' may appear between dots"));
        }
    }
    Ok(())
}

/// Parses an IPv4 address the way `inet_aton` does, which is how browsers
/// resolve hosts such as `3279880203`, `0xC3.0x7f.0.11` or `0300.0177.0.013`:
/// one to four parts, each decimal, octal (leading `0`) or hex (`0x`); the last
/// part fills the remaining bytes.
pub fn parse_ipv4(host: &[u8]) -> Option<Ipv4Addr> {
    let parts: Vec<&[u8]> = host.split(|&b| b == b'.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(4);
    for p in &parts {
        values.push(parse_ipv4_part(p)?);
    }
    let last = values.pop()?;
    let mut addr: u64 = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > 255 {
            return None;
        }
        addr |= v << (24 - 8 * i);
    }
    let remaining_bits = 32 - 8 * values.len() as u32;
    if remaining_bits < 64 && last >= (1u64 << remaining_bits) {
        return None;
    }
    addr |= last;
    u32::try_from(addr).ok().map(Ipv4Addr::from)
}

fn parse_ipv4_part(p: &[u8]) -> Option<u64> {
    if p.is_empty() || p.len() > 12 {
        return None;
    }
    let (digits, radix) = if p.len() > 2 && (p.starts_with(b"0x") || p.starts_with(b"0X")) {
        (&p[2..], 16)
    } else if p.len() > 1 && p[0] == b'0' {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    let s = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(s, radix).ok()
}

/// Escapes a host for the canonical text. Besides the Web Risk set, the bytes
/// that would split the URL differently when it is read again (`:/?@[]\\`) are
/// escaped too, so canonical text always reads back to itself.
fn escape_host(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if matches!(c, b':' | b'/' | b'?' | b'@' | b'[' | b']' | b'\\') {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push_str(&escape(&[c]));
        }
    }
    out
}
