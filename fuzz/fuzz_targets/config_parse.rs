//! A config file with any content is rejected with problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = haven_config::Config::parse(s, std::path::Path::new("/nonexistent/haven.toml"));
});
