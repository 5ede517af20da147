//! Downloaded lists are untrusted: every line of every format parses or is
//! rejected with a reason, never a panic.
#![no_main]

use haven_lists::format::{Format, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for f in [Format::Ut1, Format::Hosts, Format::Domains, Format::Urls, Format::Sha256, Format::Md5, Format::Expressions] {
        let _ = parse_line(f, s);
    }
});
