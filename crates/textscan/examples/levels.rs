//! Prints, for each line of standard input, the categories and levels the
//! shipped classifier finds, tab-separated (`Vulnerable person=5`), then the
//! explanation: a quick look while working on the lexicon or the banks.

use std::io::BufRead;

fn main() {
    let c = haven_textscan::Classifier::shipped();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let r = c.classify(&line);
        let found: Vec<String> = r.categories.iter().map(|f| format!("{}={}", f.category.name(), f.level)).collect();
        println!("{}\t{}", found.join(";"), r.explanation);
    }
}
