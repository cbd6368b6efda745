//! Text pre-processing shared by the text stages and the production line,
//! so that a model is trained on exactly the features its kit computes:
//!
//! - [`mask_pii`]: e-mail addresses, web addresses and phone numbers become
//!   `<email>`, `<url>` and `<phone>`;
//! - [`normalize`]: full-width ASCII forms and the ideographic space become
//!   their ASCII forms, letters lower case, runs of white space one space;
//! - [`char_ngrams`]: counts of character 1- to n-grams hashed into a fixed
//!   number of buckets (FNV-1a), as `1 + ln(count)`, scaled to unit length;
//! - [`Segmenter`]: Chinese word segmentation by a word list with frequencies
//!   (jieba's dictionary format), and [`hash_tokens`] for its words;
//! - [`epoch_days`] and [`calendar`]: ISO 8601 dates as day numbers, and
//!   their calendar features.

/// Replaces e-mail addresses, web addresses (`http://`, `https://`, `www.`)
/// and phone numbers (7 to 15 digits, with spaces, dots, dashes, brackets or
/// a leading `+` between them) by `<email>`, `<url>` and `<phone>`.
pub fn mask_pii(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if let Some(end) = url_at(&chars, i) {
            out.push_str("<url>");
            i = end;
        } else if let Some((start, end)) = email_around(&chars, i) {
            // The local part was already copied: take it back.
            for _ in start..i {
                out.pop();
            }
            out.push_str("<email>");
            i = end;
        } else if let Some(end) = phone_at(&chars, i) {
            out.push_str("<phone>");
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn starts_with(chars: &[char], i: usize, prefix: &str) -> bool {
    let p: Vec<char> = prefix.chars().collect();
    chars.len() >= i + p.len()
        && chars[i..i + p.len()]
            .iter()
            .zip(&p)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

fn url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// Where a web address starting at `i` ends.
fn url_at(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && url_char(chars[i - 1]) {
        return None;
    }
    let skip = ["https://", "http://", "www."]
        .iter()
        .find(|p| starts_with(chars, i, p))?
        .chars()
        .count();
    let mut end = i + skip;
    while end < chars.len() && url_char(chars[end]) {
        end += 1;
    }
    // A sentence's last full stop or comma is not part of the address.
    while end > i + skip && ".,;:!?)".contains(chars[end - 1]) {
        end -= 1;
    }
    (end > i + skip).then_some(end)
}

fn local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-".contains(c)
}

/// An e-mail address whose `@` is at `i`: (start, end).
fn email_around(chars: &[char], i: usize) -> Option<(usize, usize)> {
    if chars[i] != '@' {
        return None;
    }
    let mut start = i;
    while start > 0 && local_char(chars[start - 1]) {
        start -= 1;
    }
    let mut end = i + 1;
    while end < chars.len()
        && (chars[end].is_ascii_alphanumeric() || chars[end] == '-' || chars[end] == '.')
    {
        end += 1;
    }
    while end > i + 1 && chars[end - 1] == '.' {
        end -= 1;
    }
    let domain: String = chars[i + 1..end].iter().collect();
    let dotted = domain.split('.').count() >= 2 && domain.split('.').all(|p| !p.is_empty());
    (start < i && dotted).then_some((start, end))
}

/// Where a phone number starting at `i` ends.
fn phone_at(chars: &[char], i: usize) -> Option<usize> {
    let c = chars[i];
    if !(c.is_ascii_digit() || c == '+' || c == '(')
        || (i > 0 && chars[i - 1].is_ascii_alphanumeric())
    {
        return None;
    }
    let mut digits = 0;
    let mut end = i;
    let mut last_digit = i;
    while end < chars.len() {
        let c = chars[end];
        if c.is_ascii_digit() {
            digits += 1;
            last_digit = end + 1;
        } else if !(" .-()".contains(c) || (c == '+' && end == i)) {
            break;
        }
        end += 1;
    }
    let after_ok = last_digit >= chars.len() || !chars[last_digit].is_ascii_alphanumeric();
    ((7..=15).contains(&digits) && after_ok).then_some(last_digit)
}

/// Full-width ASCII forms (U+FF01–U+FF5E) and the ideographic space as
/// ASCII, lower case, runs of white space as one space, no space at the ends.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            0x3000 => ' ',
            _ => c,
        };
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// FNV-1a over bytes, after a kind byte (a gram's length; 0 for a token).
fn fnv(kind: u8, bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind).chain(bytes) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Bucket counts as `1 + ln(count)`, scaled to unit length.
fn weigh(counts: &[u32]) -> Vec<f32> {
    let mut v: Vec<f32> = counts
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { 1.0 + (c as f32).ln() })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// Counts of the character 1- to `max_n`-grams of `text`, hashed into
/// `buckets` (FNV-1a of the gram's UTF-8 bytes and its length), each count
/// as `1 + ln(count)`, the whole scaled to unit length (all zeros for an
/// empty text).
pub fn char_ngrams(text: &str, max_n: usize, buckets: usize) -> Vec<f32> {
    let size = buckets.max(1);
    let mut counts = vec![0u32; size];
    let chars: Vec<char> = text.chars().collect();
    let mut buf = [0u8; 4];
    for n in 1..=max_n {
        for w in chars.windows(n) {
            let bytes = w.iter().flat_map(|c| {
                let s = c.encode_utf8(&mut buf);
                s.as_bytes().to_vec()
            });
            counts[(fnv(n as u8, bytes) % size as u64) as usize] += 1;
        }
    }
    weigh(&counts)
}

/// Counts of whole tokens (words, category values) hashed into `buckets`
/// (FNV-1a of the token's UTF-8 bytes), weighed as [`char_ngrams`] does.
pub fn hash_tokens<S: AsRef<str>>(tokens: &[S], buckets: usize) -> Vec<f32> {
    let size = buckets.max(1);
    let mut counts = vec![0u32; size];
    for t in tokens {
        counts[(fnv(0, t.as_ref().bytes()) % size as u64) as usize] += 1;
    }
    weigh(&counts)
}

/// Chinese word segmentation by a word list, as jieba cuts without its
/// hidden Markov model: within each run of Chinese letters, ASCII letters
/// and digits, the cut with the highest product of word frequencies among
/// the dictionary's words (unknown single characters count once); runs of
/// ASCII letters and digits stay one token; spaces go; other characters
/// (punctuation) are tokens of their own.
#[derive(Debug, Clone)]
pub struct Segmenter {
    freq: Words,
    /// Longest word, in characters.
    longest: usize,
    log_total: f64,
}

/// Word → frequency, hashed with fixed keys: stages have no source of
/// randomness to seed a map with.
type Words = std::collections::HashMap<
    String,
    u32,
    std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>,
>;

/// A dictionary line that is not `word frequency [tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictError {
    pub line: usize,
    pub text: String,
}

impl std::fmt::Display for DictError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dictionary line {}: `{}` is not `word frequency [tag]`",
            self.line, self.text
        )
    }
}

impl std::error::Error for DictError {}

fn in_block(c: char) -> bool {
    ('\u{4E00}'..='\u{9FD5}').contains(&c) || c.is_ascii_alphanumeric() || "+#&._%-".contains(c)
}

impl Segmenter {
    /// A segmenter over `dict`: a word, its frequency and an optional tag a line.
    pub fn parse(dict: &str) -> Result<Segmenter, DictError> {
        let mut freq = Words::default();
        let mut longest = 1;
        let mut total = 0f64;
        for (n, line) in dict.lines().enumerate() {
            let mut parts = line.split_whitespace();
            let (Some(word), Some(count)) = (parts.next(), parts.next()) else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(DictError {
                    line: n + 1,
                    text: line.chars().take(60).collect(),
                });
            };
            let count: u32 = count.parse().map_err(|_| DictError {
                line: n + 1,
                text: line.chars().take(60).collect(),
            })?;
            longest = longest.max(word.chars().count());
            total += f64::from(count);
            freq.insert(word.to_owned(), count);
        }
        Ok(Segmenter {
            freq,
            longest,
            log_total: total.max(1.0).ln(),
        })
    }

    /// Words in the dictionary.
    pub fn len(&self) -> usize {
        self.freq.len()
    }

    /// Whether the dictionary is empty.
    pub fn is_empty(&self) -> bool {
        self.freq.is_empty()
    }

    /// The tokens of `text`, in order.
    pub fn cut(&self, text: &str) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut k = 0;
        while k < chars.len() {
            if in_block(chars[k]) {
                let start = k;
                while k < chars.len() && in_block(chars[k]) {
                    k += 1;
                }
                self.cut_block(&chars[start..k], &mut out);
            } else {
                if !chars[k].is_whitespace() {
                    out.push(chars[k].to_string());
                }
                k += 1;
            }
        }
        out
    }

    fn cut_block(&self, s: &[char], out: &mut Vec<String>) {
        let n = s.len();
        // route[k]: the best log probability of s[k..] and where its first word ends.
        let mut route = vec![(0f64, 0usize); n + 1];
        for k in (0..n).rev() {
            let mut best = (f64::NEG_INFINITY, k);
            let mut word = String::new();
            for end in k..n.min(k + self.longest) {
                word.push(s[end]);
                let f = match self.freq.get(&word) {
                    Some(&f) if f > 0 => f,
                    _ if end == k => 1,
                    _ => continue,
                };
                let p = f64::from(f).ln() - self.log_total + route[end + 1].0;
                if p > best.0 {
                    best = (p, end);
                }
            }
            route[k] = best;
        }
        let mut k = 0;
        let mut ascii = String::new();
        while k < n {
            let end = route[k].1;
            let word: String = s[k..=end].iter().collect();
            // Single ASCII letters and digits run together into one token.
            if end == k && s[k].is_ascii_alphanumeric() {
                ascii.push(s[k]);
            } else {
                if !ascii.is_empty() {
                    out.push(std::mem::take(&mut ascii));
                }
                out.push(word);
            }
            k = end + 1;
        }
        if !ascii.is_empty() {
            out.push(ascii);
        }
    }
}

/// The names of [`calendar`]'s features, in order.
pub const CALENDAR: [&str; 9] = [
    "year",
    "month_sin",
    "month_cos",
    "weekday_sin",
    "weekday_cos",
    "yearday_sin",
    "yearday_cos",
    "time_sin",
    "time_cos",
];

/// Days since 1970-01-01 of an ISO 8601 date, `YYYY-MM-DD`, optionally with
/// a time, ` HH:MM[:SS]` or `THH:MM[:SS]`, as the fraction of its day; `None`
/// when the text is not such a date (or the day is not in its month).
pub fn epoch_days(text: &str) -> Option<f64> {
    let t = text.trim();
    let (date, time) = match t.find([' ', 'T']) {
        Some(i) => (&t[..i], Some(t[i + 1..].trim())),
        None => (t, None),
    };
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || m.len() != 2 || day.len() != 2 {
        return None;
    }
    let (y, m, day): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, day.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || day == 0 || day > month_days[m as usize - 1] {
        return None;
    }
    // Days from the civil date (the proleptic Gregorian calendar).
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac = match time {
        None | Some("") => 0.0,
        Some(tm) => {
            let mut p = tm.split(':');
            let h: u32 = p.next()?.parse().ok()?;
            let mi: u32 = p.next()?.parse().ok()?;
            let sec: f64 = p.next().map_or(Some(0.0), |v| v.parse().ok())?;
            if p.next().is_some() || h > 23 || mi > 59 || !(0.0..60.0).contains(&sec) {
                return None;
            }
            (h as f64 * 3600.0 + mi as f64 * 60.0 + sec) / 86_400.0
        }
    };
    Some(days as f64 + frac)
}

/// Calendar features of a day number (days since 1970-01-01, a fraction
/// for the time): the year, then the month, weekday, day of the year and
/// time of day each as a point on a circle (sine, cosine), so December
/// sits next to January and Sunday next to Monday. See [`CALENDAR`].
pub fn calendar(days: f64) -> [f32; 9] {
    use std::f64::consts::TAU;
    let whole = days.floor() as i64;
    let time = days - whole as f64;
    // The civil date back from the day number.
    let z = whole + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let jan1 = epoch_days(&format!("{year:04}-01-01")).unwrap_or(whole as f64) as i64;
    let yearday = (whole - jan1) as f64;
    // 1970-01-01 was a Thursday: Monday is 0.
    let weekday = (whole + 3).rem_euclid(7) as f64;
    let circle = |v: f64, period: f64| {
        let a = TAU * v / period;
        (a.sin() as f32, a.cos() as f32)
    };
    let (ms, mc) = circle((month - 1) as f64, 12.0);
    let (ws, wc) = circle(weekday, 7.0);
    let (ys, yc) = circle(yearday, 365.25);
    let (ts, tc) = circle(time, 1.0);
    [year as f32, ms, mc, ws, wc, ys, yc, ts, tc]
}

#[cfg(test)]
mod tests {
    use super::*;

    const DICT: &str = "手机 500 n\n质量 400 n\n很 3000 d\n好 4000 a\n电池 300 n\n不 8000 d\n耐用 50 a\n不耐 2 a\n";

    #[test]
    fn dates_become_day_numbers_and_calendar_circles() {
        assert_eq!(epoch_days("1970-01-01"), Some(0.0));
        assert_eq!(epoch_days("2004-03-01"), Some(12_478.0));
        assert_eq!(
            epoch_days("1963-08-24 09:30:00"),
            Some(-2_322.0 + 9.5 / 24.0)
        );
        assert_eq!(epoch_days("2004-02-29T12:00"), Some(12_477.5));
        for bad in [
            "2003-02-29",
            "2004-13-01",
            "04-01-01",
            "2004-01-01 25:00",
            "yesterday",
        ] {
            assert_eq!(epoch_days(bad), None, "{bad}");
        }
        let c = calendar(epoch_days("2004-03-01 06:00").unwrap());
        assert_eq!(c[0], 2004.0);
        // March is month 2 of 12 from January; 2004-03-01 was a Monday; 6 am is a quarter day.
        assert!((c[1] - (std::f32::consts::TAU * 2.0 / 12.0).sin()).abs() < 1e-5);
        assert!((c[3] - 0.0).abs() < 1e-5 && (c[4] - 1.0).abs() < 1e-5);
        assert!((c[7] - 1.0).abs() < 1e-5);
        let new_year = calendar(epoch_days("2005-01-01").unwrap());
        assert_eq!(new_year[0], 2005.0);
        assert!((new_year[5]).abs() < 1e-6);
    }

    #[test]
    fn words_come_out_as_the_likeliest_cut_with_ascii_runs_whole() {
        let s = Segmenter::parse(DICT).unwrap();
        assert_eq!(
            s.cut("这个手机质量很好，电池不耐用 iphone12"),
            [
                "这", "个", "手机", "质量", "很", "好", "，", "电池", "不", "耐用", "iphone12"
            ]
        );
        assert_eq!(s.len(), 8);
    }

    #[test]
    fn a_bad_dictionary_line_is_named_and_tokens_hash_like_ngrams() {
        let err = Segmenter::parse("好 4000\n坏 many\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("`坏 many`"));
        let v = hash_tokens(&["好", "好", "手机"], 64);
        assert_eq!(v.iter().filter(|x| **x > 0.0).count(), 2);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(hash_tokens::<&str>(&[], 8), vec![0.0; 8]);
    }

    #[test]
    fn emails_urls_and_phones_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_pii("访问我的网站 www.smallstonesoft.com，或写信 li.ming@example.cn."),
            "访问我的网站 <url>，或写信 <email>."
        );
        assert_eq!(
            mask_pii("Call +86 138-0013-8000 or see https://a.b/c?d=1, thanks"),
            "Call <phone> or see <url>, thanks"
        );
        // Short numbers, prices and versions stay.
        assert_eq!(
            mask_pii("2 books for 35.5 yuan, v1.2"),
            "2 books for 35.5 yuan, v1.2"
        );
        assert_eq!(mask_pii("a@b is not an address"), "a@b is not an address");
    }

    #[test]
    fn full_width_forms_case_and_spaces_are_normalised() {
        assert_eq!(
            normalize("  ＡＢＣ　１２３！\n\tHello  World "),
            "abc 123! hello world"
        );
        assert_eq!(normalize("很好看。"), "很好看。");
    }

    #[test]
    fn ngram_vectors_have_unit_length_and_depend_only_on_the_text() {
        let a = char_ngrams("很好看", 2, 64);
        assert_eq!(a.len(), 64);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(a, char_ngrams("很好看", 2, 64));
        assert_ne!(a, char_ngrams("不好看", 2, 64));
        assert!(char_ngrams("", 2, 8).iter().all(|x| *x == 0.0));
        // Five grams of 1 and 2 characters: at most five buckets used.
        assert!(a.iter().filter(|x| **x > 0.0).count() <= 5);
    }
}
