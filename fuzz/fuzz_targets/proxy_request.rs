//! Whatever a client sends the proxy goes through hyper's head parser,
//! identification (including `Proxy-Authorization`), canonicalisation, the
//! decision and the pages without a panic; any answer is an HTTP/1.x response
//! (HTTP/1.0 to a 1.0 client).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out = haven_proxy::fuzzing::request_bytes(data);
    if !out.is_empty() {
        assert!(out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "), "{:?}", String::from_utf8_lossy(&out[..out.len().min(64)]));
    }
});
