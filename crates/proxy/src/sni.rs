//! Peeking at a TLS ClientHello for the server name (SNI), so a CONNECT to a
//! bare IP address is still decided on the site the client means. The hello
//! is reassembled across TLS records (a client, or someone evading the filter,
//! may split it over several, and TCP over several segments), parses only
//! what it needs, never panics, and bounds what it waits for.

/// What the first bytes of a TLS connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// A ClientHello naming this server (lowercased).
    Sni(String),
    /// A complete ClientHello with no server name, or one that cannot be read.
    NoSni,
    /// Not enough bytes yet: read more.
    NeedMore,
    /// Not a TLS ClientHello, or one larger than [`MAX_HELLO`].
    NotTls,
}

/// The most bytes worth waiting for, record headers included. Real hellos are
/// a few kilobytes (post-quantum key shares included); more is an attack.
pub const MAX_HELLO: usize = 1 << 16;

/// The largest TLS plaintext record (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;

/// Reassembles a ClientHello from TLS records as bytes arrive, in any split.
#[derive(Debug, Default, Clone)]
pub struct Hello {
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current record's body still to come.
    record_left: usize,
    /// The handshake stream so far (record bodies, headers removed).
    message: Vec<u8>,
    seen: usize,
    done: Option<Peek>,
}

impl Hello {
    /// A reassembly with nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes from the client; [`Peek::NeedMore`] until there is an answer,
    /// which is then given for good.
    pub fn push(&mut self, mut data: &[u8]) -> Peek {
        if let Some(p) = &self.done {
            return p.clone();
        }
        // Only the first MAX_HELLO bytes are ever read, so the answer is the same
        // however the bytes were split.
        let budget = MAX_HELLO - self.seen;
        let over = data.len() > budget;
        data = &data[..data.len().min(budget)];
        self.seen += data.len();
        while !data.is_empty() {
            if self.record_left == 0 {
                let take = (5 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                self.header_len += take;
                data = &data[take..];
                // A handshake record (22), TLS major version 3; nothing else may come before the hello.
                if self.header[0] != 22 || (self.header_len > 1 && self.header[1] != 3) {
                    return self.finish(Peek::NotTls);
                }
                if self.header_len < 5 {
                    continue;
                }
                let len = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                if len == 0 || len > MAX_RECORD {
                    return self.finish(Peek::NotTls);
                }
                self.record_left = len;
                self.header_len = 0;
            } else {
                let take = self.record_left.min(data.len());
                self.message.extend_from_slice(&data[..take]);
                self.record_left -= take;
                data = &data[take..];
                // Handshake type 1: ClientHello.
                if self.message[0] != 1 {
                    return self.finish(Peek::NotTls);
                }
                if self.message.len() >= 4 {
                    let len = (usize::from(self.message[1]) << 16) | (usize::from(self.message[2]) << 8) | usize::from(self.message[3]);
                    if len > MAX_HELLO {
                        return self.finish(Peek::NotTls);
                    }
                    if self.message.len() >= 4 + len {
                        let mut r = Reader { b: &self.message[4..4 + len], at: 0 };
                        let p = match hello_sni(&mut r) {
                            Some(Some(name)) => Peek::Sni(name),
                            _ => Peek::NoSni,
                        };
                        return self.finish(p);
                    }
                }
            }
        }
        if over {
            return self.finish(Peek::NotTls);
        }
        Peek::NeedMore
    }

    fn finish(&mut self, p: Peek) -> Peek {
        self.message = Vec::new();
        self.done = Some(p.clone());
        p
    }
}

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
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// Reads the server name from the start of a TLS connection (all of it seen so far).
pub fn peek(buf: &[u8]) -> Peek {
    Hello::new().push(buf)
}

fn hello_sni(r: &mut Reader<'_>) -> Option<Option<String>> {
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
                let name = std::str::from_utf8(name).ok()?.trim_end_matches('.');
                let ok = !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
                return Some(ok.then(|| name.to_ascii_lowercase()));
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
        assert_eq!(peek(&bad), Peek::NeedMore, "a hello longer than its record waits for the next record");
        // The message's own length covers what is there, but an extension claims more.
        let m = n - 4;
        bad[6..9].copy_from_slice(&(m as u32).to_be_bytes()[1..]);
        assert_eq!(peek(&bad), Peek::NoSni, "a truncated extension is no name, not a panic");
    }

    /// The hello's handshake message re-cut into records of the given sizes (the last takes the rest).
    fn records(hello: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut msg = &hello[5..];
        let mut out = Vec::new();
        for (i, &n) in sizes.iter().chain(std::iter::once(&usize::MAX)).enumerate() {
            if msg.is_empty() {
                break;
            }
            let n = if i == sizes.len() { msg.len() } else { n.min(msg.len()) };
            out.extend([22, 3, 1]);
            out.extend((n as u16).to_be_bytes());
            out.extend(&msg[..n]);
            msg = &msg[n..];
        }
        out
    }

    #[test]
    fn a_hello_split_over_records_and_segments_is_reassembled() {
        let h = hello(Some("bet.test"));
        let body = h.len() - 5;
        for cut in 1..body {
            let split = records(&h, &[cut]);
            assert_eq!(peek(&split), Peek::Sni("bet.test".into()), "two records cut at {cut}");
            assert_eq!(peek(&split[..split.len() - 1]), Peek::NeedMore);
        }
        let tiny = records(&h, &vec![1; body]);
        assert_eq!(peek(&tiny), Peek::Sni("bet.test".into()), "one byte a record");
        // And whatever the TCP segments: byte by byte.
        let mut r = Hello::new();
        let answers: Vec<Peek> = tiny.iter().map(|b| r.push(std::slice::from_ref(b))).collect();
        assert!(answers[..answers.len() - 1].iter().all(|p| *p == Peek::NeedMore));
        assert_eq!(answers.last(), Some(&Peek::Sni("bet.test".into())));
        assert_eq!(r.push(b"more"), Peek::Sni("bet.test".into()), "the answer stands");
    }

    #[test]
    fn reassembly_is_bounded_and_refuses_other_records() {
        // An application-data record in the middle of the hello.
        let h = hello(Some("bet.test"));
        let mut mixed = records(&h, &[10]);
        mixed.truncate(15);
        mixed.extend([23, 3, 3, 0, 1, 0]);
        assert_eq!(peek(&mixed), Peek::NotTls);
        // A hello that claims to be huge, and one fed forever in one-byte records.
        assert_eq!(peek(&[22, 3, 1, 0, 4, 1, 0x10, 0, 0]), Peek::NotTls);
        let mut r = Hello::new();
        let mut last = Peek::NeedMore;
        let mut fed = 0;
        // A message length of 60000 bytes, then one byte a record.
        r.push(&[22, 3, 1, 0, 4, 1, 0, 0xea, 0x60]);
        while last == Peek::NeedMore && fed < 2 * MAX_HELLO {
            last = r.push(&[22, 3, 1, 0, 1, 0]);
            fed += 6;
        }
        assert_eq!(last, Peek::NotTls, "gave up after {fed} bytes");
        assert!(fed <= MAX_HELLO);
        assert_eq!(peek(&hello(Some("."))), Peek::NoSni, "a name of dots is no name");
    }
}
