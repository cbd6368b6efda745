//! Cards are written by outside teams: Markdown rendered with every raw HTML
//! block and tag shown as text, links only to the web, mail or this site,
//! and images only from this registry (a remote image would tell a third
//! party who reads the card); what is dropped keeps its text.

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

/// Whether a link target may be followed: a path or fragment on this site,
/// or `http`, `https` or `mailto`.
fn safe_link(url: &str) -> bool {
    // Browsers skip control characters and spaces inside a scheme (`java\tscript:`).
    let cleaned: String = url
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    match cleaned.split_once(':') {
        // A colon after a slash, `?` or `#` is not a scheme.
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => !cleaned.starts_with("//") && !cleaned.starts_with("\\\\"),
    }
}

/// Whether an image may be shown: only this registry's own blobs.
fn local_image(url: &str) -> bool {
    url.starts_with("/blobs/sha256:")
        && url["/blobs/sha256:".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

/// A card as sanitised HTML.
pub fn render(card: &str) -> String {
    let mut opts = Options::empty();
    opts.insert(Options::ENABLE_TABLES);
    opts.insert(Options::ENABLE_STRIKETHROUGH);
    opts.insert(Options::ENABLE_TASKLISTS);
    // Link and image ends must match their starts: remember which were dropped.
    let mut dropped: Vec<bool> = Vec::new();
    let mut in_image: Vec<bool> = Vec::new();
    let events = Parser::new_ext(card, opts).filter_map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Some(Event::Text(h)),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            // An e-mail autolink (`<x@example.org>`) cannot carry a scheme.
            let ok = link_type == LinkType::Email || safe_link(&dest_url);
            dropped.push(!ok);
            ok.then_some(Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }))
        }
        Event::End(TagEnd::Link) => (!dropped.pop().unwrap_or(true)).then_some(e),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let ok = local_image(&dest_url);
            in_image.push(!ok);
            if ok {
                Some(Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                }))
            } else {
                Some(Event::Text(CowStr::from("[image: ")))
            }
        }
        Event::End(TagEnd::Image) => {
            if in_image.pop().unwrap_or(false) {
                Some(Event::Text(CowStr::from("]")))
            } else {
                Some(e)
            }
        }
        other => Some(other),
    });
    let mut html = String::with_capacity(card.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events);
    // Links leave the site without telling where from, and open nothing with our rights.
    html.replace("<a href=", "<a rel=\"nofollow noopener noreferrer\" href=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_event_handlers_and_scripts_are_shown_as_text() {
        let out = render(
            "# Card\n\n<script>alert(1)</script>\n\nHi <img src=x onerror=alert(2)> there\n\n<div onclick=\"x()\">d</div>",
        );
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("<div"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(out.contains("<h1>Card</h1>"), "{out}");
    }

    #[test]
    fn only_web_mail_and_local_links_survive() {
        let out = render(
            "[a](javascript:alert(1)) [b](JaVa\tScRiPt:alert(1)) [c](data:text/html,x) [d](https://example.org/x) [e](/teams/acme) [f](vbscript:x) [g](//evil.example/x) <mailto:x@example.org>",
        );
        // `b` is no link at all (a tab may not stand in a link's target): text only.
        assert!(!out.to_lowercase().contains("href=\"javascript"), "{out}");
        assert!(!out.to_lowercase().contains("href=\"java\tscript"), "{out}");
        assert!(!out.contains("data:"), "{out}");
        assert!(!out.contains("vbscript"), "{out}");
        assert!(!out.contains("evil.example"), "{out}");
        assert!(out.contains("href=\"https://example.org/x\""), "{out}");
        assert!(out.contains("href=\"/teams/acme\""), "{out}");
        assert!(out.contains("href=\"mailto:x@example.org\""), "{out}");
        // The dropped links keep their text.
        assert!(out.contains("[b]"), "{out}");
        assert!(!safe_link("JaVa\tScRiPt:alert(1)"));
        assert!(!safe_link(" javascript:x"));
        for t in ["a", "c", "f", "g"] {
            assert!(
                out.contains(&format!(" {t} ")) || out.contains(&format!(">{t} ")),
                "{t}: {out}"
            );
        }
        assert!(
            out.contains("rel=\"nofollow noopener noreferrer\""),
            "{out}"
        );
    }

    #[test]
    fn remote_images_become_their_alt_text_and_local_blobs_show() {
        let d = "ab".repeat(32);
        let out = render(&format!(
            "![tracker](https://evil.example/p.png) ![chart](/blobs/sha256:{d}) ![x](/blobs/sha256:zz\" onerror=\"y)"
        ));
        assert!(!out.contains("evil.example"), "{out}");
        assert!(out.contains("[image: tracker]"), "{out}");
        assert!(
            out.contains(&format!("<img src=\"/blobs/sha256:{d}\" alt=\"chart\"")),
            "{out}"
        );
        // The quoted target is no image at all, only text: one <img>, the local one.
        assert_eq!(out.matches("<img").count(), 1, "{out}");
    }
}
