//! What the semantic stage reads in each line of stdin: whether the gate
//! lets it through, and the reading past the gate.
//!
//!     cargo run --release -p haven-textscan --example read < lines.txt

use std::io::BufRead;

use haven_textscan::semantic::Semantic;

fn main() {
    let s = Semantic::shipped_shared();
    for line in std::io::stdin().lock().lines() {
        let Ok(text) = line else { break };
        println!("gate {} | {text}\n    {:?}", if s.worth_reading(&text) { "passes" } else { "stops " }, s.meaning(&text, true));
    }
}
