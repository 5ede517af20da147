//! Monitoring events bring pupils' text from devices over the network, and
//! the web app's lexicon form brings phrases: classifying must never panic,
//! spans must fall on character boundaries of the original text, and a level
//! comes with every finding.
#![no_main]

use std::sync::OnceLock;

use haven_textscan::{Classifier, Lexicon};
use libfuzzer_sys::fuzz_target;

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        let mut lexicons = Lexicon::shipped();
        let trust = "[offensive]\n\"*zorb*\" = 1\n[bullying]\n\"dyke\" = 2\n[exclude]\n\"dyke road\" = \"a street\"\n";
        lexicons.push(Lexicon::parse(trust).expect("the target's own lexicon parses"));
        Classifier::new(&lexicons).with_model(haven_textscan::model::Model::shipped())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let r = classifier().classify(text);
    for s in &r.spans {
        assert!(s.start <= s.end && s.end <= text.len(), "span {s:?} outside the text");
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end), "span {s:?} splits a character");
    }
    assert_eq!(r.level.is_none(), r.categories.is_empty());
    assert!(r.categories.iter().all(|f| (1..=5).contains(&f.level)));
    // A phrase typed into the web app's lexicon form is checked, never trusted.
    let _ = Lexicon::from_entries("fuzz", [("bullying", text, 3)], [(text, "fuzz")]);
});
