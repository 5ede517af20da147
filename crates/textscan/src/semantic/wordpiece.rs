//! BERT's uncased tokenizer, as all-MiniLM-L6-v2 was trained with it: clean
//! and lower-case the text, strip accents, split on white space and
//! punctuation, then cut each word into the longest vocabulary pieces from
//! the left ("unaliving" → "una", "##li", "##ving"). A word that cannot be
//! cut is unknown and left out: its meaning is not in the table.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Words longer than this are never cut (BERT's limit).
const MAX_WORD_CHARS: usize = 100;

/// The vocabulary, for cutting words.
pub(crate) struct WordPiece {
    ids: HashMap<String, u32>,
}

impl WordPiece {
    pub(crate) fn new(tokens: &[String]) -> Self {
        Self { ids: tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect() }
    }

    /// The token ids of `text`, with no `[CLS]`/`[SEP]`.
    pub(crate) fn ids(&self, text: &str, out: &mut Vec<u32>) {
        out.clear();
        let mut word = String::new();
        let mut piece = String::new();
        for c in text.nfd() {
            if is_combining_mark(c) || c == '\u{0}' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                self.word(&word, &mut piece, out);
                word.clear();
            } else if is_punctuation(c) || is_cjk(c) {
                self.word(&word, &mut piece, out);
                word.clear();
                let mut b = [0u8; 4];
                self.word(c.encode_utf8(&mut b), &mut piece, out);
            } else {
                word.extend(c.to_lowercase());
            }
        }
        self.word(&word, &mut piece, out);
    }

    fn word(&self, word: &str, piece: &mut String, out: &mut Vec<u32>) {
        if word.is_empty() || word.chars().count() > MAX_WORD_CHARS {
            return;
        }
        let before = out.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let found = loop {
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.push_str(&word[start..end]);
                if let Some(id) = self.ids.get(piece.as_str()) {
                    break Some(*id);
                }
                match word[..end].char_indices().next_back() {
                    Some((i, _)) if i > start => end = i,
                    _ => break None,
                }
            };
            let Some(id) = found else {
                out.truncate(before);
                return;
            };
            out.push(id);
            start = end;
        }
    }
}

/// BERT's punctuation: ASCII symbols, and Unicode's punctuation blocks.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0x00a1..=0x00bf | 0x2010..=0x2027 | 0x2030..=0x205e | 0x3001..=0x3003 | 0x3008..=0x3011 | 0xff01..=0xff0f | 0xff1a..=0xff20)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x4e00..=0x9fff | 0x3400..=0x4dbf | 0x20000..=0x2a6df | 0xf900..=0xfaff | 0x2f800..=0x2fa1f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> WordPiece {
        let t: Vec<String> = ["[UNK]", "i", "saved", "my", "tablets", "una", "##li", "##ving", "'", "m", ".", "cafe"].iter().map(|s| s.to_string()).collect();
        WordPiece::new(&t)
    }

    #[test]
    fn words_are_cut_into_the_longest_pieces_from_the_left() {
        let mut out = Vec::new();
        vocab().ids("I'm unaliving. Café", &mut out);
        assert_eq!(out, vec![1, 8, 9, 5, 6, 7, 10, 11]);
    }

    #[test]
    fn a_word_that_cannot_be_cut_is_left_out() {
        let mut out = Vec::new();
        vocab().ids("saved zzz tablets", &mut out);
        assert_eq!(out, vec![2, 4]);
    }
}
