//! Chinese word segmentation by a word list (`algobay_stage::text::Segmenter`):
//! the cut of each run of Chinese letters with the highest product of word
//! frequencies, as jieba cuts without its hidden Markov model; ASCII words
//! and numbers stay whole, spaces go, punctuation stays a token. The word
//! list is the asset `words` (jieba's format: `word frequency [tag]` a line).
//! Config: `max_chars` (default 20000) refuses longer texts by name.
use algobay_stage::text::Segmenter;
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

struct ChineseSegment {
    words: Segmenter,
    max_chars: usize,
}

impl Stage for ChineseSegment {
    fn contract() -> Contract {
        Contract::new()
            .input("text", "text")
            .output("tokens", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let dict = config.asset_text("words")?;
        let words = Segmenter::parse(dict).map_err(|e| format!("asset `words`: {e}"))?;
        if words.is_empty() {
            return Err("asset `words` holds no word".into());
        }
        Ok(ChineseSegment {
            words,
            max_chars: config.usize_or("max_chars", 20_000)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.text("text")?;
        let len = t.chars().count();
        if len > self.max_chars {
            return Err(format!(
                "input `text` has {len} characters, more than the {} this stage takes",
                self.max_chars
            ));
        }
        Ok(Outputs::new().json("tokens", &serde_json::json!(self.words.cut(t))))
    }
}

algobay_stage::stage!(ChineseSegment);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_cut_into_dictionary_words() {
        let words = Segmenter::parse("质量 40 n\n不错 30 a\n物流 20 n\n太慢 5 a\n").unwrap();
        let s = ChineseSegment {
            words,
            max_chars: 100,
        };
        assert_eq!(
            s.words.cut("质量不错，物流太慢!"),
            ["质量", "不错", "，", "物流", "太慢", "!"]
        );
    }

    #[test]
    fn a_missing_or_broken_word_list_is_refused_by_name() {
        let cfg = Config::parse("{}", Vec::new()).unwrap();
        assert!(ChineseSegment::new(&cfg).err().unwrap().contains("words"));
        let bad = algobay_stage::Asset {
            name: "words".into(),
            data: b"x y z\n".to_vec(),
        };
        let cfg = Config::parse("{}", vec![bad]).unwrap();
        let err = ChineseSegment::new(&cfg).err().unwrap();
        assert!(err.contains("asset `words`: dictionary line 1"), "{err}");
    }
}
