//! URLs and hostnames arrive from the network (DNS questions, proxy requests):
//! canonicalisation must never panic and must be idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = haven_url::canonicalize_bytes(data) {
        let again = haven_url::CanonicalUrl::parse(&u.to_string()).expect("canonical text parses");
        assert_eq!(u.to_string(), again.to_string());
        let _ = u.lookup_expressions();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(h) = haven_url::canonical_host(s) {
            assert_eq!(haven_url::canonical_host(&h).as_deref(), Ok(h.as_str()));
        }
    }
});
