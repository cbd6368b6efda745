"""Drives the web console in Debian's chromium through Playwright (no
downloaded browser). Run by tests/console.rs, which sets up the registry, an
agent and the tokens; prints `ok: <step>` per step it checked, and fails with
the reason otherwise. Phase `main` does everything but the revocation and
keeps the doomed token's session in STATE; phase `revoked` checks that this
session no longer works after the token was revoked."""

import os
import re
import sys
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright, expect

WEB = os.environ["WEB"].rstrip("/")
SHOTS = os.environ["SHOTS"]
STATE = os.environ["STATE"]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]


def ok(step):
    print(f"ok: {step}", flush=True)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def context(browser, **kw):
    return browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900}, **kw)


def sign_in(ctx, token, next_path="/"):
    page = ctx.new_page()
    page.goto(f"{WEB}/signin?next={next_path}")
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_load_state()
    assert "/signin" not in page.url, f"sign-in failed: {page.content()[:500]}"
    return page


def status(page, url):
    r = page.goto(url)
    return r.status if r else 0


def marketplace_and_kit(browser):
    ctx = context(browser)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=WEB)
    page = ctx.new_page()
    page.goto(WEB + "/")
    shot(page, "marketplace-home")
    page.fill("#q", "ocr")
    page.press("#q", "Enter")
    page.wait_for_load_state()
    # The kind facet narrows to kits.
    page.click("section[data-facet=kind] a:text-is('kit')")
    page.wait_for_load_state()
    assert "kind=kit" in page.url, page.url
    cards = page.locator("article.card")
    assert cards.count() >= 1, page.content()[:800]
    for i in range(cards.count()):
        assert cards.nth(i).get_attribute("data-kind") == "kit"
    shot(page, "marketplace")
    page.click("article.card h2 a:has-text('ocr')")
    page.wait_for_load_state()
    expect(page.locator("#pipeline svg")).to_be_visible()
    steps = page.locator("#pipeline svg g.step").count()
    assert steps >= 5, f"pipeline shows {steps} boxes"
    assert "det" in page.locator("#pipeline").inner_text() or "det" in page.inner_html("#pipeline")
    img = page.locator("#golden img").first
    expect(img).to_be_visible()
    width = img.evaluate("i => i.naturalWidth")
    assert width > 0, "golden sample image did not load"
    pull = page.locator("#pull").inner_text()
    assert pull.startswith("algobay kit pull algobay/ocr"), pull
    page.click("#copy-pull")
    expect(page.locator("#copy-pull")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == pull, f"clipboard has {copied!r}"
    shot(page, "kit")
    ok("search, facet, kit page, diagram, golden samples, pull command copied")
    ctx.close()


def hostile_card(browser):
    ctx = context(browser)
    page = ctx.new_page()
    dialogs, elsewhere, console = [], [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console.append(m.text))
    host = urlparse(WEB).hostname

    def request(r):
        h = urlparse(r.url).hostname
        if h and h != host:
            elsewhere.append(r.url)

    page.on("request", request)
    page.goto(WEB + "/a/model/algobay/helpful/1.0.0")
    page.wait_for_load_state("networkidle")
    card = page.locator("#card")
    expect(card).to_contain_text("Plain markdown still renders")
    expect(card.locator("strong")).to_have_text("markdown")
    # The attack is shown as text, not run.
    expect(card).to_contain_text("<script>")
    assert card.locator("script").count() == 0
    assert card.locator("[onerror]").count() == 0
    assert card.locator("a[href^='javascript']").count() == 0
    assert card.locator("img[src^='http']").count() == 0
    # The link without its target: clicking it does nothing.
    page.click("#card >> text=click me")
    assert page.evaluate("window.__pwned === undefined"), "a card script ran"
    assert not dialogs, f"dialogs opened: {dialogs}"
    assert not elsewhere, f"requests left the site: {elsewhere}"
    assert not any("pwned" in c for c in console), console
    csp = page.goto(page.url).headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    shot(page, "hostile-card")
    ok("hostile card inert")
    ctx.close()


def acme_flows(browser):
    ctx = context(browser)
    page = sign_in(ctx, os.environ["ACME"], "/fleet")
    cookies = {c["name"]: c for c in ctx.cookies()}
    s = cookies["algobay_session"]
    assert s["httpOnly"] and s["secure"] and s["sameSite"] == "Strict", s
    assert page.evaluate("document.cookie").find("algobay_session") < 0
    ok("session cookie HttpOnly Secure SameSite=Strict")
    shot(page, "fleet")
    device_href = page.locator("#devices a").first.get_attribute("href")

    # Label three samples with the keyboard: accept the model's answer three times, save.
    page.goto(WEB + "/labelling")
    samples = page.locator(".queue .sample")
    assert samples.count() == 3, f"{samples.count()} samples waiting"
    page.locator(".queue .sample").first.focus()
    for _ in range(3):
        page.keyboard.press("a")
    shot(page, "labelling")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_have_text("3 labels saved.")
    assert page.locator(".queue .sample").count() == 0
    ok("three samples labelled with the keyboard")

    # A deployment from the fleet page: canary first, then promoted by the gate.
    page.goto(WEB + "/fleet")
    page.fill("#deploy-kit", "algobay/digits-mlp@1.0.1")
    page.fill("#deploy-canary", "1.0")
    page.fill("#deploy-soak", "3")
    with page.expect_navigation():
        page.click("#deploy-start")
    assert "/fleet/deployments/" in page.url, page.url
    deployment_url = page.url
    expect(page.locator("#state")).to_have_text("canary")
    shot(page, "deployment-canary")
    for _ in range(90):
        page.wait_for_timeout(1000)
        page.goto(deployment_url)
        if page.locator("#state").inner_text() == "promoted":
            break
    expect(page.locator("#state")).to_have_text("promoted")
    shot(page, "deployment-promoted")
    ok("deployment seen in canary, then promoted")

    page.goto(WEB + device_href)
    shot(page, "device")
    traces = page.locator("#traces a")
    trace_url = WEB + traces.first.get_attribute("href") if traces.count() else None
    if trace_url:
        page.goto(trace_url)
        expect(page.locator("#waterfall svg")).to_be_visible()
        shot(page, "trace")
    page.goto(WEB + "/training")
    shot(page, "training")

    # Forms without this session's anti-forgery token are refused.
    dep_id = deployment_url.rsplit("/", 1)[1]
    r = ctx.request.post(f"{WEB}/fleet/deployments/{dep_id}/rollback", form={"reason": "forged"})
    assert r.status == 403, r.status
    r = ctx.request.post(f"{WEB}/fleet/deployments/{dep_id}/rollback", form={"reason": "forged", "csrf": "0" * 32})
    assert r.status == 403, r.status
    r = ctx.request.post(f"{WEB}/labelling", form={"label.x": "1"})
    assert r.status == 403, r.status
    page.goto(deployment_url)
    expect(page.locator("#state")).to_have_text("promoted")
    ok("forms without the token refused")
    return ctx, deployment_url, WEB + device_href, trace_url


def other_enterprise(browser, deployment_url, device_url, trace_url):
    ctx = context(browser)
    page = sign_in(ctx, os.environ["GLOBEX"])
    urls = [deployment_url, device_url]
    if trace_url:
        urls.append(trace_url)
    for u in urls:
        assert status(page, u) == 404, f"{u} answered {status(page, u)} to globex"
    # Its own queue and fleet show none of acme's.
    page.goto(WEB + "/labelling")
    assert page.locator(".queue .sample").count() == 0
    page.goto(WEB + "/fleet")
    assert page.locator("#devices a").count() == 0
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    dep_id = deployment_url.rsplit("/", 1)[1]
    for action in ["promote", "pause", "rollback"]:
        r = ctx.request.post(f"{WEB}/fleet/deployments/{dep_id}/{action}", form={"csrf": csrf, "reason": "x"})
        assert r.status == 404, f"{action}: {r.status}"
    # Asking for acme by name does not help an enterprise.
    assert status(page, f"{WEB}/fleet?enterprise=acme") == 200
    assert page.locator("#devices a").count() == 0
    shot(page, "other-enterprise")
    ok("another enterprise gets 404")
    ctx.close()


def coverage(browser):
    ctx = context(browser)
    page = ctx.new_page()
    assert status(page, WEB + "/coverage") in (200,) and "/signin" in page.url
    page = sign_in(ctx, os.environ["OPERATOR"], "/coverage")
    rows = page.locator("#targets tr.met, #targets tr.unmet")
    assert rows.count() >= 6, rows.count()
    for i in range(rows.count()):
        verdict = rows.nth(i).locator(".verdict").inner_text()
        assert verdict in ("met", "not met"), verdict
    assert page.locator("svg").count() >= 4
    shot(page, "coverage")
    ok("coverage shows every target met or not")
    ctx.close()


def doomed_session(browser):
    ctx = context(browser)
    page = sign_in(ctx, os.environ["DOOMED"], "/fleet")
    expect(page.locator("h1")).to_have_text("Fleet of acme")
    ctx.storage_state(path=STATE)
    ctx.close()


def revoked(browser):
    ctx = context(browser, storage_state=STATE)
    page = ctx.new_page()
    page.goto(WEB + "/fleet")
    assert "/signin" in page.url, f"still signed in: {page.url}"
    ok("revoked token's session ended")
    ctx.close()


def main():
    phase = sys.argv[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        if phase == "main":
            marketplace_and_kit(browser)
            hostile_card(browser)
            acme_ctx, dep, dev, trace = acme_flows(browser)
            other_enterprise(browser, dep, dev, trace)
            coverage(browser)
            doomed_session(browser)
            acme_ctx.close()
        else:
            revoked(browser)
        browser.close()


if __name__ == "__main__":
    main()
