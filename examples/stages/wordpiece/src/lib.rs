//! BERT tokenisation (uncased): clean the text, split on white space and
//! punctuation (CJK characters alone), lowercase and strip accents, then
//! greedy longest-match WordPiece against the model's `vocab.txt`, wrapped in
//! `[CLS] … [SEP]` and truncated to `max_length`.
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// A fixed hasher: std's default one asks the host for random seeds, which stages are not granted.
type Map<K, V> = HashMap<K, V, BuildHasherDefault<DefaultHasher>>;

use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

struct WordPiece {
    vocab: Map<String, i64>,
    unk: i64,
    cls: i64,
    sep: i64,
    max_length: usize,
    lowercase: bool,
    max_chars_per_word: usize,
}

fn is_punct(c: char) -> bool {
    let u = c as u32;
    (33..=47).contains(&u)
        || (58..=64).contains(&u)
        || (91..=96).contains(&u)
        || (123..=126).contains(&u)
        || (0x2000..=0x206F).contains(&u)
        || (0x3000..=0x303F).contains(&u)
        || (0xFF01..=0xFF0F).contains(&u)
        || (0xFF1A..=0xFF20).contains(&u)
        || (0xFF3B..=0xFF40).contains(&u)
        || (0xFF5B..=0xFF65).contains(&u)
        || matches!(c, '¡' | '§' | '«' | '¶' | '·' | '»' | '¿')
}

fn is_cjk(c: char) -> bool {
    let u = c as u32;
    (0x4E00..=0x9FFF).contains(&u)
        || (0x3400..=0x4DBF).contains(&u)
        || (0x20000..=0x2A6DF).contains(&u)
        || (0x2A700..=0x2B73F).contains(&u)
        || (0x2B740..=0x2B81F).contains(&u)
        || (0x2B820..=0x2CEAF).contains(&u)
        || (0xF900..=0xFAFF).contains(&u)
        || (0x2F800..=0x2FA1F).contains(&u)
}

impl WordPiece {
    fn basic_tokens(&self, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let flush = |cur: &mut String, words: &mut Vec<String>| {
            if !cur.is_empty() {
                words.push(std::mem::take(cur));
            }
        };
        for c in text.chars() {
            if c == '\0' || c == '\u{FFFD}' || (c.is_control() && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                flush(&mut cur, &mut words);
            } else if is_cjk(c) || is_punct(c) {
                flush(&mut cur, &mut words);
                words.push(c.to_string());
            } else {
                cur.push(c);
            }
        }
        flush(&mut cur, &mut words);
        if self.lowercase {
            // Lowercase, strip accents (NFD, drop combining marks), and re-split punctuation
            // that the decomposition may have exposed.
            words = words
                .into_iter()
                .map(|w| {
                    w.to_lowercase()
                        .nfd()
                        .filter(|c| !is_combining_mark(*c))
                        .collect::<String>()
                })
                .filter(|w| !w.is_empty())
                .collect();
        }
        words
    }

    fn wordpiece(&self, word: &str, out: &mut Vec<i64>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > self.max_chars_per_word {
            out.push(self.unk);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let mut s: String = chars[start..end].iter().collect();
                if start > 0 {
                    s.insert_str(0, "##");
                }
                if let Some(&id) = self.vocab.get(&s) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => {
                    pieces.push(id);
                    start = end;
                }
                None => {
                    out.push(self.unk);
                    return;
                }
            }
        }
        out.extend(pieces);
    }
}

impl Stage for WordPiece {
    fn contract() -> Contract {
        Contract::new()
            .input("text", "text")
            .output("input_ids", "i64[1,?]")
            .output("attention_mask", "i64[1,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let vocab: Map<String, i64> = config
            .asset_text("vocab")?
            .lines()
            .enumerate()
            .map(|(i, t)| (t.trim_end().to_owned(), i as i64))
            .collect();
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("asset `vocab` lacks the token {t}"))
        };
        let max_length = config.usize_or("max_length", 256)?;
        if max_length < 2 {
            return Err("config field `max_length` must be at least 2".into());
        }
        Ok(WordPiece {
            unk: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            vocab,
            max_length,
            lowercase: config.bool_or("lowercase", true)?,
            max_chars_per_word: config.usize_or("max_chars_per_word", 100)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let text = inputs.text("text")?;
        let mut ids = vec![self.cls];
        for w in self.basic_tokens(text) {
            self.wordpiece(&w, &mut ids);
        }
        ids.truncate(self.max_length - 1);
        ids.push(self.sep);
        let n = ids.len() as u64;
        Ok(Outputs::new()
            .tensor("input_ids", Tensor::from_i64(vec![1, n], &ids))
            .tensor(
                "attention_mask",
                Tensor::from_i64(vec![1, n], &vec![1; ids.len()]),
            ))
    }
}

algobay_stage::stage!(WordPiece);
