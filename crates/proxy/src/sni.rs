//! Peeking at a TLS ClientHello for the server name (SNI), so a CONNECT to a
//! bare IP address is still decided on the site the client means. Parses
//! only what it needs, never panics, and bounds what it waits for.

/// What the first bytes of a TLS connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// A ClientHello naming this server (lowercased).
    Sni(String),
    /// A complete ClientHello with no server name.
    NoSni,
    /// Not enough bytes yet: read more (up to [`MAX_HELLO`]).
    NeedMore,
    /// Not a TLS ClientHello.
    NotTls,
}

/// The most bytes worth waiting for: one TLS record header and a full record.
pub const MAX_HELLO: usize = 5 + (1 << 14);

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|s| usize::from(s[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|s| (usize::from(s[0]) << 16) | (usize::from(s[1]) << 8) | usize::from(s[2]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Reads the server name from the start of a TLS connection.
pub fn peek(buf: &[u8]) -> Peek {
    if buf.is_empty() {
        return Peek::NeedMore;
    }
    // A handshake record (22), TLS major version 3.
    if buf[0] != 22 || buf.get(1).is_some_and(|&v| v != 3) {
        return Peek::NotTls;
    }
    if buf.len() < 5 {
        return Peek::NeedMore;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if record_len == 0 || record_len > 1 << 14 {
        return Peek::NotTls;
    }
    let Some(record) = buf.get(5..5 + record_len) else { return Peek::NeedMore };
    let mut r = Reader { b: record, at: 0 };
    // Handshake type 1: ClientHello. (A hello split over several records is
    // rare enough to be read as "no name", which the policy then decides.)
    if r.u8() != Some(1) {
        return Peek::NotTls;
    }
    match hello_sni(&mut r) {
        Some(Some(name)) => Peek::Sni(name),
        _ => Peek::NoSni,
    }
}

fn hello_sni(r: &mut Reader<'_>) -> Option<Option<String>> {
    let _len = r.u24()?;
    r.take(2 + 32)?; // version, random
    r.vec8()?; // session id
    r.vec16()?; // cipher suites
    r.vec8()?; // compression methods
    let Some(exts) = r.vec16() else { return Some(None) };
    let mut e = Reader { b: exts, at: 0 };
    while e.at < exts.len() {
        let kind = e.u16()?;
        let body = e.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut s = Reader { b: body, at: 0 };
        let list = s.vec16()?;
        let mut l = Reader { b: list, at: 0 };
        while l.at < list.len() {
            let name_type = l.u8()?;
            let name = l.vec16()?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                let ok = !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
                return Some(ok.then(|| name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
    }
    Some(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello naming `name` (or none).
    pub(crate) fn hello(name: Option<&str>) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(n) = name {
            let mut entry = vec![0u8];
            entry.extend((n.len() as u16).to_be_bytes());
            entry.extend(n.as_bytes());
            let mut list = (entry.len() as u16).to_be_bytes().to_vec();
            list.extend(entry);
            exts.extend(0u16.to_be_bytes());
            exts.extend((list.len() as u16).to_be_bytes());
            exts.extend(list);
        }
        // An unrelated extension first (supported_versions).
        let mut all = vec![0, 43, 0, 3, 2, 3, 4];
        all.extend(exts);
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one suite
        body.extend([1, 0]); // null compression
        body.extend((all.len() as u16).to_be_bytes());
        body.extend(all);
        let mut hs = vec![1];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut rec = vec![22, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn reads_the_name_and_waits_for_the_rest() {
        let h = hello(Some("WWW.Example.COM"));
        assert_eq!(peek(&h), Peek::Sni("www.example.com".into()));
        for cut in [0, 3, 5, 20, h.len() - 1] {
            assert_eq!(peek(&h[..cut]), Peek::NeedMore, "cut at {cut}");
        }
        assert_eq!(peek(&hello(None)), Peek::NoSni);
    }

    #[test]
    fn rejects_what_is_not_a_hello() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peek::NotTls);
        assert_eq!(peek(&[22, 3, 1, 0, 0]), Peek::NotTls);
        let mut h = hello(Some("a.example"));
        h[5] = 2; // ServerHello
        assert_eq!(peek(&h), Peek::NotTls);
        let mut bad = hello(Some("a b"));
        assert_eq!(peek(&bad), Peek::NoSni, "a name with a space is no name");
        bad.truncate(bad.len() - 2);
        let n = bad.len() - 5;
        bad[3..5].copy_from_slice(&(n as u16).to_be_bytes());
        assert_eq!(peek(&bad), Peek::NoSni, "a truncated extension is no name, not a panic");
    }
}
