//! What the semantic stage reads in each line of stdin: whether the gate
//! lets it through, the reading past the gate, and (with `READ_TOP=N`) the
//! head's N likeliest kinds.
//!
//!     cargo run --release -p haven-textscan --example read < lines.txt

use std::io::BufRead;

use haven_textscan::semantic::Semantic;

fn main() {
    let s = Semantic::shipped_shared();
    let top: usize = std::env::var("READ_TOP").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    for line in std::io::stdin().lock().lines() {
        let Ok(text) = line else { break };
        println!("gate {} | {text}\n    {:?}", if s.worth_reading(&text) { "passes" } else { "stops " }, s.meaning(&text, true));
        if top > 0 {
            let p = s.head().probabilities(&s.embed(&text));
            let mut ranked: Vec<(&String, f32)> = s.head().classes().iter().zip(p).collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            let shown: Vec<String> = ranked.iter().take(top).map(|(c, p)| format!("{c} {p:.3}")).collect();
            println!("    head: {}", shown.join(", "));
        }
    }
}
