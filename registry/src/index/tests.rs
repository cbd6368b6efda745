//! The search index's behaviour.
use super::*;
use crate::domain::Kind;

fn art(name: &str, domain: &str, desc: &str, industries: &[&str]) -> Artifact {
    Artifact {
        description: desc.into(),
        industries: industries.iter().map(|s| s.to_string()).collect(),
        domain: domain.into(),
        task: "t".into(),
        ..Artifact::new(
            Kind::Model,
            name.into(),
            "1.0.0".into(),
            algobay_runtime::Digest::of(name.as_bytes()),
            1,
            "onnx",
        )
    }
}

fn q() -> Query {
    Query {
        page_size: 10,
        ..Default::default()
    }
}

#[test]
fn a_name_with_punctuation_finds_what_it_begins_wherever_it_starts_a_word() {
    let mut ix = SearchIndex::default();
    ix.upsert(art("bench/mlp-1", "tabular", "first", &[]));
    ix.upsert(art("bench/mlp-12", "tabular", "second", &[]));
    ix.upsert(art("bench/mlp-2", "tabular", "a fork of bench/mlp-1.", &[]));
    ix.upsert(art("other/mlp-1x", "tabular", "not xbench/mlp-1", &[]));
    let names = |text: &str| {
        let mut v: Vec<String> = ix
            .search(&Query {
                text: text.into(),
                ..q()
            })
            .artifacts
            .into_iter()
            .map(|a| a.name)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names("bench/mlp-1"),
        ["bench/mlp-1", "bench/mlp-12", "bench/mlp-2"]
    );
    assert_eq!(names("BENCH/MLP-12"), ["bench/mlp-12"]);
    assert_eq!(
        names("mlp-1"),
        ["bench/mlp-1", "bench/mlp-12", "bench/mlp-2", "other/mlp-1x"]
    );
    assert_eq!(names("fork bench/mlp"), ["bench/mlp-2"]);
    assert_eq!(
        names("ench/mlp-1"),
        ["bench/mlp-1", "bench/mlp-12"],
        "inside a name, not inside a description"
    );
}

#[test]
fn filters_words_and_substrings_all_apply() {
    let mut ix = SearchIndex::default();
    ix.upsert(art(
        "a/ocr",
        "vision",
        "Fast OCR for invoices",
        &["finance"],
    ));
    ix.upsert(art("a/vad", "speech", "Voice activity", &["telecom"]));
    ix.upsert(art("b/mlp-12", "tabular", "tiny classifier", &["finance"]));
    let names = |p: Page| p.artifacts.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(ix.search(&Query {
            text: "ocr".into(),
            ..q()
        })),
        ["a/ocr"]
    );
    assert_eq!(
        names(ix.search(&Query {
            industry: "finance".into(),
            ..q()
        })),
        ["a/ocr", "b/mlp-12"]
    );
    assert_eq!(
        names(ix.search(&Query {
            industry: "finance".into(),
            domain: "tabular".into(),
            ..q()
        })),
        ["b/mlp-12"]
    );
    assert_eq!(
        names(ix.search(&Query {
            text: "mlp-1".into(),
            ..q()
        })),
        ["b/mlp-12"],
        "substrings of words match"
    );
    assert_eq!(
        names(ix.search(&Query {
            text: "voice nothing".into(),
            ..q()
        })),
        Vec::<String>::new()
    );
    assert_eq!(
        names(ix.search(&Query {
            team: "a".into(),
            ..q()
        })),
        ["a/ocr", "a/vad"]
    );
    assert_eq!(
        names(ix.search(&Query {
            text: "invoi".into(),
            ..q()
        })),
        ["a/ocr"],
        "word prefixes match"
    );
    assert_eq!(
        names(ix.search(&Query {
            text: "nvoice".into(),
            ..q()
        })),
        Vec::<String>::new(),
        "mid-word does not"
    );
}

fn ranked(ix: &SearchIndex, text: &str) -> Vec<String> {
    ix.search(&Query {
        text: text.into(),
        ..q()
    })
    .artifacts
    .into_iter()
    .map(|a| a.name)
    .collect()
}

#[test]
fn a_part_of_a_name_or_a_typo_finds_it_ranked_below_whole_words() {
    let mut ix = SearchIndex::default();
    ix.upsert(art("ext/captcha-ddddocr", "vision", "reads captchas", &[]));
    ix.upsert(art("a/ocr-det", "vision", "text detection", &[]));
    ix.upsert(art("a/ocr", "vision", "text recognition", &[]));
    ix.upsert(art("b/scanner", "vision", "an ocr pipeline for forms", &[]));
    ix.upsert(art("c/docrank", "nlp", "ranks documents", &[]));
    assert_eq!(
        ranked(&ix, "ocr"),
        [
            "a/ocr",
            "a/ocr-det",
            "ext/captcha-ddddocr",
            "c/docrank",
            "b/scanner"
        ],
        "whole name, word of the name, part of a name (in publishing order), word of a description"
    );
    assert_eq!(
        ranked(&ix, "captha"),
        ["ext/captcha-ddddocr"],
        "one letter left out"
    );
    assert_eq!(
        ranked(&ix, "catpcha"),
        ["ext/captcha-ddddocr"],
        "two letters swapped"
    );
    assert_eq!(ranked(&ix, "dddocr"), ["ext/captcha-ddddocr"]);
    assert_eq!(
        ranked(&ix, "scannr ocr"),
        ["b/scanner"],
        "every word must match"
    );
    assert!(ranked(&ix, "xyz").is_empty());
    assert!(
        ranked(&ix, "ocd").is_empty(),
        "three letters: no typo allowed"
    );
    assert!(
        ranked(&ix, "capxxha").is_empty(),
        "two edits in seven letters is too many"
    );
    assert_eq!(
        ranked(&ix, "detectoin"),
        Vec::<String>::new(),
        "typos match words of names and tags, not descriptions"
    );
}

#[test]
fn ranked_pages_follow_on_without_repeats() {
    let mut ix = SearchIndex::default();
    for i in 0..25 {
        ix.upsert(art(&format!("t/ocr-{i}"), "vision", "x", &[]));
        ix.upsert(art(&format!("t/m{i}"), "vision", "an ocr model", &[]));
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = ix.search(&Query {
            text: "ocr".into(),
            page_size: 7,
            page_token: token.clone(),
            ..q()
        });
        assert_eq!(page.total, 50);
        seen.extend(page.artifacts.into_iter().map(|a| a.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 50);
    assert!(
        seen[..25].iter().all(|n| n.starts_with("t/ocr-")),
        "{seen:?}"
    );
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 50);
}

#[test]
fn distance_counts_insertions_deletions_substitutions_and_swaps() {
    let d = |a: &str, b: &str, max| {
        distance_within(
            &a.chars().collect::<Vec<_>>(),
            &b.chars().collect::<Vec<_>>(),
            max,
        )
    };
    assert_eq!(d("captcha", "captcha", 1), Some(0));
    assert_eq!(d("captha", "captcha", 1), Some(1));
    assert_eq!(d("catpcha", "captcha", 1), Some(1));
    assert_eq!(d("caqtcha", "captcha", 1), Some(1));
    assert_eq!(d("cptha", "captcha", 1), None);
    assert_eq!(d("cptha", "captcha", 2), Some(2));
}

#[test]
fn pages_follow_on_and_total_counts_everything() {
    let mut ix = SearchIndex::default();
    for i in 0..25 {
        ix.upsert(art(&format!("t/m{i}"), "vision", "x", &[]));
    }
    let first = ix.search(&Query {
        page_size: 10,
        domain: "vision".into(),
        ..q()
    });
    assert_eq!((first.artifacts.len(), first.total), (10, 25));
    let second = ix.search(&Query {
        page_size: 10,
        domain: "vision".into(),
        page_token: first.next_page_token.clone(),
        ..q()
    });
    assert_eq!(second.artifacts[0].name, "t/m10");
    let third = ix.search(&Query {
        page_size: 10,
        domain: "vision".into(),
        page_token: second.next_page_token.clone(),
        ..q()
    });
    assert_eq!(
        (third.artifacts.len(), third.next_page_token.as_str()),
        (5, "")
    );
}

#[test]
fn updating_an_artifact_moves_it_between_facets() {
    let mut ix = SearchIndex::default();
    let mut a = art("t/m", "vision", "x", &[]);
    ix.upsert(a.clone());
    a.domain = "speech".into();
    ix.upsert(a);
    assert_eq!(
        ix.search(&Query {
            domain: "vision".into(),
            ..q()
        })
        .total,
        0
    );
    assert_eq!(
        ix.search(&Query {
            domain: "speech".into(),
            ..q()
        })
        .total,
        1
    );
    assert_eq!(ix.len(), 1);
}
