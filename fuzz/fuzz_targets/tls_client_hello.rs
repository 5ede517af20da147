//! The ClientHello peek never panics, never reads past what it was given, and
//! a name it returns is one the policy can decide on.
#![no_main]

use haven_proxy::sni::{Peek, peek};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Peek::Sni(name) = peek(data) {
        assert!(!name.is_empty() && name.len() <= 253);
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)), "{name:?}");
    }
    // A prefix never claims more than the whole.
    if data.len() > 1 && peek(&data[..data.len() / 2]) == Peek::NotTls {
        assert_eq!(peek(data), Peek::NotTls);
    }
});
