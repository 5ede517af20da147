//! Every packet a client can send goes through parse → identify → decide →
//! answer → encode without a panic; any reply is a valid DNS message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(reply) = haven_dns::fuzzing::answer_packet(data) {
        assert!(reply.len() >= 12, "a reply has at least a header");
    }
});
