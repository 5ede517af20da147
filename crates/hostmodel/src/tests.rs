use std::collections::HashSet;

use haven_policy::Category;

use crate::HostModel;
use crate::train::{Example, Options, train};

fn example(host: &str, class: usize) -> Example {
    Example { host: host.into(), path: None, class }
}

/// A small world: casinos, shops and news sites with made-up names.
fn tiny() -> (HostModel, Vec<crate::train::Calibrated>) {
    let classes = [None, Some(Category::Gambling)];
    let mut ex = Vec::new();
    for (i, w) in ["royal", "lucky", "golden", "mega", "star", "spin", "vegas", "jackpot", "super", "grand"].iter().enumerate() {
        ex.push(example(&format!("{w}casino{i}.com"), 1));
        ex.push(example(&format!("{w}-bet.net"), 1));
        ex.push(example(&format!("{w}slots.io"), 1));
        ex.push(example(&format!("{w}gazette.com"), 0));
        ex.push(example(&format!("{w}-garden-centre.co.uk"), 0));
        ex.push(example(&format!("the{w}bakery.fr"), 0));
    }
    let vocabulary: HashSet<String> = ["casino", "bet", "slots", "gazette", "garden", "bakery", "royal", "lucky"].iter().map(|s| s.to_string()).collect();
    let o = Options { bits: 14, epochs: 20, floor: 0.5, ..Options::default() };
    train(&classes, &ex, &ex, vocabulary, o)
}

#[test]
fn learns_names_it_has_not_seen_and_explains_them() {
    let (model, _) = tiny();
    let g = model.guess("planetcasino.com", None).expect("a guess");
    assert_eq!(g.category, Category::Gambling);
    assert!(g.confidence > 0.6, "{g:?}");
    let why = model.explain("planetcasino.com", g.category);
    assert!(why.iter().any(|e| e == "casino"), "{why:?}");
    let ordinary = model.guess("planetgazette.com", None);
    assert!(ordinary.as_ref().is_none_or(|g| g.confidence < 0.5), "{ordinary:?}");
}

#[test]
fn the_file_round_trips_and_refuses_damage() {
    let (model, _) = tiny();
    let bytes = model.to_bytes();
    let back = HostModel::from_bytes(&bytes).unwrap();
    assert_eq!(back.probabilities("luckycasino.com", None), model.probabilities("luckycasino.com", None));
    assert_eq!(back.calibrated_thresholds(), model.calibrated_thresholds());
    assert!(HostModel::from_bytes(b"not a model").is_err());
    let cut = &bytes[..bytes.len() / 2];
    assert!(HostModel::from_bytes(cut).is_err());
}

#[test]
fn training_is_deterministic() {
    let (a, _) = tiny();
    let (b, _) = tiny();
    assert_eq!(a.to_bytes(), b.to_bytes());
}

#[test]
fn the_shipped_model_loads_and_reads_names() {
    let model = HostModel::shipped().expect("shipped model");
    assert!(model.categories().any(|c| c == Category::Gambling));
    let g = model.guess("newretrocasinoonline.com", None).expect("a casino is guessed");
    assert_eq!(g.category, Category::Gambling, "{g:?}");
    let why = model.explain("newretrocasinoonline.com", g.category);
    assert!(why.iter().any(|e| e.contains("casino")), "{why:?}");
    let ordinary = model.guess("selmatimesjournal.com", None);
    assert!(ordinary.as_ref().is_none_or(|g| g.confidence < 0.6), "{ordinary:?}");
}
