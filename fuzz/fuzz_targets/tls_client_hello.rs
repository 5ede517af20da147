//! The ClientHello peek never panics, never reads past what it was given, and
//! a name it returns is one the policy can decide on. Reassembly gives the
//! same answer however the bytes arrive.
#![no_main]

use haven_proxy::sni::{Hello, Peek, peek};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = peek(data);
    if let Peek::Sni(name) = &whole {
        assert!(!name.is_empty() && name.len() <= 253);
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)), "{name:?}");
    }
    // A prefix never claims more than the whole.
    if data.len() > 1 && peek(&data[..data.len() / 2]) == Peek::NotTls {
        assert_eq!(whole, Peek::NotTls);
    }
    // The same bytes in segments of a size the input picks: the same answer.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut r = Hello::new();
    let mut last = Peek::NeedMore;
    for chunk in data.chunks(step) {
        last = r.push(chunk);
    }
    assert_eq!(last, whole);
});
