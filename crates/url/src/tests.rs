use proptest::prelude::*;

use super::*;

fn canon(input: &[u8]) -> String {
    canonicalize_bytes(input).map(|u| u.to_string()).unwrap_or_else(|e| format!("ERR {e}"))
}

/// The published Safe Browsing / Web Risk canonicalisation vectors.
#[test]
fn web_risk_vectors() {
    let vectors: &[(&[u8], &str)] = &[
        (b"http://host/%25%32%35", "http://host/%25"),
        (b"http://host/%25%32%35%25%32%35", "http://host/%25%25"),
        (b"http://host/%2525252525252525", "http://host/%25"),
        (b"http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
        (b"http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
        (b"http://www.google.com/", "http://www.google.com/"),
        (
            b"http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
            "http://168.188.99.26/.secure/www.ebay.com/",
        ),
        (
            b"http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
            "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
        ),
        (
            b"http://host%23.com/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
            "http://host%23.com/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
        ),
        (b"http://3279880203/blah", "http://195.127.0.11/blah"),
        (b"http://www.google.com/blah/..", "http://www.google.com/"),
        (b"www.google.com/", "http://www.google.com/"),
        (b"www.google.com", "http://www.google.com/"),
        (b"http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
        (b"http://www.GOOgle.com/", "http://www.google.com/"),
        (b"http://www.google.com.../", "http://www.google.com/"),
        (b"http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"),
        (b"http://www.google.com/q?", "http://www.google.com/q?"),
        (b"http://www.google.com/q?r?", "http://www.google.com/q?r?"),
        (b"http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
        (b"http://evil.com/foo#bar#baz", "http://evil.com/foo"),
        (b"http://evil.com/foo;", "http://evil.com/foo;"),
        (b"http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
        (b"http://\x01\x80.com/", "http://%01%80.com/"),
        (b"http://notrailingslash.com", "http://notrailingslash.com/"),
        (b"http://www.gotaport.com:1234/", "http://www.gotaport.com/"),
        (b"  http://www.google.com/  ", "http://www.google.com/"),
        (b"http:// leadingspace.com/", "http://%20leadingspace.com/"),
        (b"http://%20leadingspace.com/", "http://%20leadingspace.com/"),
        (b"%20leadingspace.com/", "http://%20leadingspace.com/"),
        (b"https://www.securesite.com/", "https://www.securesite.com/"),
        (b"http://host.com/ab%23cd", "http://host.com/ab%23cd"),
        (b"http://host.com//twoslashes?more//slashes", "http://host.com/twoslashes?more//slashes"),
    ];
    for (input, want) in vectors {
        assert_eq!(canon(input), *want, "input {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn haven_host_rules() {
    let cases = [
        ("HTTPS://Bücher.DE./Kapitel", "https://xn--bcher-kva.de/Kapitel"),
        ("http://user:secret@example.com:8080/x", "http://example.com/x"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://0x7f000001/", "http://127.0.0.1/"),
        ("http://0x7f000001.:80/", "http://127.0.0.1/"),
        ("http://127.1/", "http://127.0.0.1/"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://0300.0250.0.1/", "http://192.168.0.1/"),
        ("http://[2001:DB8:0:0::1]:443/a", "http://[2001:db8::1]/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/a/b/.", "http://example.com/a/b/"),
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("example.com/a b", "http://example.com/a%20b"),
    ];
    for (input, want) in cases {
        assert_eq!(canon(input.as_bytes()), want, "input {input:?}");
    }
    let u = CanonicalUrl::parse("https://example.com:8443/").unwrap();
    assert_eq!(u.port, Some(8443));
    // A bare host (a CONNECT target) in any IPv4 form is an address too.
    for h in ["0x7f000001", "0X7F000001", "2130706433", "127.1", "0177.0.0.1", "127.0.0.1."] {
        assert_eq!(canonical_host(h).unwrap(), "127.0.0.1", "{h}");
    }
    assert_eq!(canonical_host("0xfeed.example").unwrap(), "0xfeed.example", "a name whose first label looks hex");
}

/// Found by fuzzing: IDNA turned `%¾` into `%34`, which read back differently.
#[test]
fn idna_output_that_is_no_hostname_is_escaped_instead() {
    let input = b"e\xcd\xa3%\xc2\xbe";
    let once = canonicalize_bytes(input).unwrap().to_string();
    let again = CanonicalUrl::parse(&once).unwrap().to_string();
    assert_eq!(once, again);
}

/// Found by fuzzing: `.[` canonicalised to `%5B`, which then read as a broken IPv6 literal.
#[test]
fn an_escaped_bracket_is_not_an_ipv6_literal() {
    let once = canonicalize_bytes(b".[").unwrap().to_string();
    assert_eq!(once, "http://%5B/");
    assert_eq!(CanonicalUrl::parse(&once).unwrap().to_string(), once);
}

/// Found by fuzzing: IDNA maps `1¹` to `11`, which is an address.
#[test]
fn an_idna_result_can_be_an_address() {
    assert_eq!(canonicalize_bytes("1¹?".as_bytes()).unwrap().to_string(), "http://0.0.0.11/?");
}

/// Found by fuzzing: IDNA maps the ideographic full stop to a dot.
#[test]
fn an_idna_result_is_normalised_again() {
    let once = canonicalize_bytes("http://g\u{3002}/".as_bytes()).unwrap().to_string();
    assert_eq!(once, "http://g/");
}

#[test]
fn bare_hosts() {
    assert_eq!(canonical_host("WWW.Example.COM.").unwrap(), "www.example.com");
    assert_eq!(canonical_host("*.ads.example.com").unwrap(), "ads.example.com");
    assert_eq!(canonical_host("пример.рф").unwrap(), "xn--e1afmkfd.xn--p1ai");
    assert_eq!(canonical_host("3279880203").unwrap(), "195.127.0.11");
    assert!(canonical_host("bad host.com").is_err());
    assert!(canonical_host(&"a".repeat(64)).is_err());
    assert!(canonical_host("").is_err());
    assert!(canonical_host("1.2.3.4.5").is_ok(), "five numeric labels are a name, not an address");
}

#[test]
fn www_and_suffixes() {
    assert_eq!(strip_www("www.example.com"), "example.com");
    assert_eq!(strip_www("www.com"), "www.com");
    assert_eq!(strip_www("wwwexample.com"), "wwwexample.com");
    let s: Vec<_> = host_suffixes("a.b.example.com").collect();
    assert_eq!(s, ["a.b.example.com", "b.example.com", "example.com", "com"]);
}

#[test]
fn path_segment_prefixes() {
    let p: Vec<_> = segment_prefixes("/a/b/c").collect();
    assert_eq!(p, ["/a", "/a/b", "/a/b/c"]);
    let p: Vec<_> = segment_prefixes("/a/b/").collect();
    assert_eq!(p, ["/a", "/a/b"]);
    assert_eq!(segment_prefixes("/").count(), 0);
}

/// The Web Risk suffix/prefix expression examples.
#[test]
fn lookup_expressions_follow_web_risk() {
    let u = CanonicalUrl::parse("http://a.b.c/1/2.html?param=1").unwrap();
    assert_eq!(
        u.lookup_expressions(),
        ["a.b.c/1/2.html?param=1", "a.b.c/1/2.html", "a.b.c/", "a.b.c/1/", "b.c/1/2.html?param=1", "b.c/1/2.html", "b.c/", "b.c/1/"]
    );
    let u = CanonicalUrl::parse("http://a.b.c.d.e.f.g/1.html").unwrap();
    assert_eq!(
        u.lookup_expressions(),
        [
            "a.b.c.d.e.f.g/1.html",
            "a.b.c.d.e.f.g/",
            "c.d.e.f.g/1.html",
            "c.d.e.f.g/",
            "d.e.f.g/1.html",
            "d.e.f.g/",
            "e.f.g/1.html",
            "e.f.g/",
            "f.g/1.html",
            "f.g/"
        ]
    );
    let u = CanonicalUrl::parse("http://1.2.3.4/1/").unwrap();
    assert_eq!(u.lookup_expressions(), ["1.2.3.4/1/", "1.2.3.4/"]);
}

proptest! {
    #[test]
    fn canonicalisation_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = canonicalize_bytes(&bytes);
    }

    #[test]
    fn canonicalisation_is_idempotent(s in "[a-zA-Z0-9%./:?#@_~ -]{0,60}") {
        if let Ok(once) = CanonicalUrl::parse(&s) {
            let again = CanonicalUrl::parse(&once.to_string()).expect("canonical text parses");
            prop_assert_eq!(&once.to_string(), &again.to_string());
        }
    }

    #[test]
    fn unicode_urls_are_idempotent(s in "\\PC{0,30}") {
        if let Ok(once) = CanonicalUrl::parse(&s) {
            let again = CanonicalUrl::parse(&once.to_string()).expect("canonical text parses");
            prop_assert_eq!(once.to_string(), again.to_string());
        }
    }

    #[test]
    fn canonical_hosts_are_idempotent(s in "[a-zA-Z0-9.-]{1,40}") {
        if let Ok(once) = canonical_host(&s) {
            prop_assert_eq!(canonical_host(&once).unwrap(), once.clone());
        }
    }
}
