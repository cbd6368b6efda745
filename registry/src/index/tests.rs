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
fn a_hyphenated_query_with_a_typo_finds_the_name_by_its_parts() {
    let mut ix = SearchIndex::default();
    ix.upsert(art(
        "spotify/basic-pitch",
        "speech",
        "notes from audio",
        &[],
    ));
    ix.upsert(art("notai/nudenet-detector", "vision", "detects", &[]));
    ix.upsert(art("x/pitch-shift", "speech", "shifts pitch", &[]));
    for q in ["basc-pitch", "basic-pich", "basic-pitch", "basc pitch"] {
        assert_eq!(ranked(&ix, q), ["spotify/basic-pitch"], "query {q}");
    }
    assert_eq!(ranked(&ix, "nudenet-detectr"), ["notai/nudenet-detector"]);
    assert_eq!(
        ranked(&ix, "spotify/basc-pitch"),
        ["spotify/basic-pitch"],
        "a team and a name with a typo"
    );
    assert!(
        ranked(&ix, "basc-xyzzy").is_empty(),
        "every part must match"
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

fn names(p: &Page) -> Vec<&str> {
    p.artifacts.iter().map(|a| a.name.as_str()).collect()
}

#[test]
fn sorts_page_by_offset_and_keep_the_downloads_and_metric_order() {
    use crate::domain::Sort;
    let mut ix = SearchIndex::default();
    for (i, (name, acc, day)) in [
        ("t/c", 0.7, 3),
        ("t/a", 0.9, 1),
        ("t/d", f64::NAN, 4),
        ("t/b", 0.8, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let mut a = art(name, "vision", "x", &[]);
        a.published_unix = day * 86_400;
        a.metrics.insert("accuracy".into(), acc);
        ix.upsert(a.clone());
        ix.set_downloads(&a.key(), i as u64 * 10);
    }
    let sorted = |sort: Sort, page_size: usize, token: &str| {
        ix.search(&Query {
            sort,
            page_size,
            page_token: token.into(),
            ..q()
        })
    };
    assert_eq!(
        names(&sorted(Sort::Name, 10, "")),
        ["t/a", "t/b", "t/c", "t/d"]
    );
    assert_eq!(
        names(&sorted(Sort::Updated, 10, "")),
        ["t/d", "t/c", "t/b", "t/a"]
    );
    // No finite metric comes last.
    assert_eq!(
        names(&sorted(Sort::Metric, 10, "")),
        ["t/a", "t/b", "t/c", "t/d"]
    );
    assert_eq!(
        names(&sorted(Sort::Downloads, 10, "")),
        ["t/b", "t/d", "t/a", "t/c"]
    );
    let first = sorted(Sort::Name, 3, "");
    assert_eq!(first.next_page_token, "3");
    let rest = sorted(Sort::Name, 3, &first.next_page_token);
    assert_eq!(
        (names(&rest), rest.next_page_token.as_str()),
        (vec!["t/d"], "")
    );
    assert_eq!(rest.downloads, [20]);
    assert_eq!(ix.downloads(&ix.all().next().unwrap().key()), 0);
}

#[test]
fn facets_count_every_match_and_license_filters() {
    let mut ix = SearchIndex::default();
    for (name, domain, license, industries) in [
        ("a/x", "vision", "MIT", &["finance", "retail"][..]),
        ("a/y", "vision", "Apache-2.0", &["finance"][..]),
        ("b/z", "speech", "MIT", &[][..]),
    ] {
        let mut a = art(name, domain, "x", industries);
        a.license = license.into();
        ix.upsert(a);
    }
    let p = ix.search(&Query {
        facets: true,
        page_size: 1,
        ..q()
    });
    let facet = |name: &str| {
        p.facets
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .values
            .clone()
    };
    assert_eq!(
        facet("domain"),
        [("vision".to_owned(), 2), ("speech".to_owned(), 1)]
    );
    assert_eq!(
        facet("industry"),
        [("finance".to_owned(), 2), ("retail".to_owned(), 1)]
    );
    assert_eq!(facet("team"), [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    assert_eq!(
        facet("license"),
        [("MIT".to_owned(), 2), ("Apache-2.0".to_owned(), 1)]
    );
    assert_eq!(p.artifacts.len(), 1, "facets count past the page");
    let mit = ix.search(&Query {
        license: "MIT".into(),
        ..q()
    });
    assert_eq!(names(&mit), ["a/x", "b/z"]);
    assert!(mit.facets.is_empty(), "facets only when asked");
}
