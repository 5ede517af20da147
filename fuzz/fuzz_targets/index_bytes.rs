//! A damaged index file is refused or answers look-ups without panicking.
#![no_main]

use haven_policy::{ListLookup, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"HAVENIX1".to_vec();
    bytes.extend_from_slice(data);
    if let Ok(index) = haven_lists::ListIndex::from_bytes(bytes, std::path::Path::new("fuzz")) {
        let mut out = Vec::new();
        for url in ["http://a.b.example.com/x/y?z", "example.org", "http://10.0.0.1/"] {
            index.lookup(&Request::parse(url).unwrap(), &mut out);
        }
    }
});
