//! Prints, for each line of standard input, the categories and levels the
//! shipped classifier finds, tab-separated (`Vulnerable person=5`), then the
//! explanation and the semantic head's three likeliest kinds: a quick look
//! while working on the lexicon or the banks.
//! With `--eval FILE` (a labelled JSONL set), scores the classifier with and
//! without the semantic stage instead.

use std::io::BufRead;

use haven_textscan::eval::{Report, Row};
use haven_textscan::{Classifier, Concern, Lexicon};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, file] = args.as_slice()
        && flag == "--eval"
    {
        let rows: Vec<Row> = std::fs::read_to_string(file)
            .expect("a readable labelled set")
            .lines()
            .filter_map(|l| {
                let text = field(l, "\"text\": \"")?;
                let labels = Concern::ALL
                    .into_iter()
                    .filter(|c| l.split("\"labels\"").nth(1).is_some_and(|r| r.split(']').next().unwrap_or("").contains(c.name())))
                    .collect();
                Some(Row { text, labels, hard_negative: l.contains("\"hard_negative\": true") })
            })
            .collect();
        let without = Classifier::new(&Lexicon::shipped()).with_shared_model(haven_textscan::model::Model::shipped_shared());
        println!("without the semantic stage:\n{}", Report::of(&without, &rows));
        println!("with it:\n{}", Report::of(&Classifier::shipped(), &rows));
        return;
    }
    let c = Classifier::shipped();
    let semantic = haven_textscan::semantic::Semantic::shipped_shared();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let r = c.classify(&line);
        let found: Vec<String> = r.categories.iter().map(|f| format!("{}={}", f.category.name(), f.level)).collect();
        // The head's three likeliest kinds, for seeing how sure it is.
        let p = semantic.head().probabilities(&semantic.embed(&line));
        let mut kinds: Vec<(&String, f32)> = semantic.head().classes().iter().zip(p).collect();
        kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = kinds.iter().take(3).map(|(k, p)| format!("{k} {p:.2}")).collect();
        println!("{}\t{}\t[{}]", found.join(";"), r.explanation, top.join(", "));
    }
}

/// A JSON string field, unescaped enough for a look (quotes and backslashes).
fn field(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).unwrap_or('\u{fffd}'));
                }
                o => out.push(o),
            },
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}
