//! Text recipes: rows as the text stages compute them, and the word list
//! a word-level recipe's kits carry.

use std::path::Path;

use super::{data, recipe};

/// A text recipe's rows as numbers: each text masked, normalised and hashed
/// (as the kit's `pii-mask`, `text-normalize` and `char-ngram-hash` do, or
/// with a word list `chinese-segment` and `feature-hash`),
/// one column per bucket; the cells keep the text, for golden inputs.
pub(super) fn text_features(
    mut p: data::Prepared,
    spec: &recipe::TextSpec,
    words: Option<&algobay_text::Segmenter>,
) -> data::Prepared {
    use algobay_text::{char_ngrams, hash_tokens, mask_pii, normalize};
    for (x, cells) in p.x.iter_mut().zip(&p.cells) {
        let clean = normalize(&mask_pii(&cells[0]));
        *x = match words {
            Some(w) => hash_tokens(&w.cut(&clean), spec.buckets),
            None => char_ngrams(&clean, spec.n, spec.buckets),
        };
    }
    p.columns = (0..spec.buckets)
        .map(|b| data::Column {
            name: format!("{}#{b}", spec.column),
            categories: Vec::new(),
            date: false,
        })
        .collect();
    p
}

/// A word-level text recipe's word list: its `keep` most frequent words,
/// in jieba's format, as the kits carry it.
pub(super) fn word_list(dir: &Path, spec: &recipe::TextSpec) -> Result<Option<String>, String> {
    let Some(file) = &spec.words else {
        return Ok(None);
    };
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("[text] words `{}`: {e}", path.display()))?;
    algobay_text::Segmenter::parse(&text)
        .map_err(|e| format!("[text] words `{}`: {e}", path.display()))?;
    let mut lines: Vec<(u64, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let word = parts.next()?;
            Some((parts.next()?.parse().ok()?, word))
        })
        .collect();
    // Most frequent first, ties by word, so the list is the same every run.
    lines.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    lines.truncate(spec.keep.max(1));
    Ok(Some(
        lines.iter().map(|(f, w)| format!("{w} {f}\n")).collect(),
    ))
}
