#!/usr/bin/env python3
"""Drive the web console in headless Chromium (selenium, Debian chromium +
chromium-driver); test_web_console.sh prepares the daemon and the data and
checks the outcome through streamvisorctl afterwards.

  console.py --url URL --token-file F --ctl 'STREAMVISORCTL -s SOCK' \
      --run RUN --xss-run RUN --xss-text TEXT... --dead-id ID \
      --dead-stream S --pause-pool POOL --victim NAME --out DIR --profile DIR

Steps, each printed as "# check:" / "ok -" lines like lib.sh; any failure
exits 1 with the reason, a screenshot (DIR/console-fail.png) and the page
text.  Exit 77: selenium or the browser cannot start at all.

What it checks in the browser:
  - the Content-Security-Policy header of "/" (strict: no 'unsafe-*') and
    that the page logs no CSP violation;
  - log in with the token (POST /api/v1/login, cookie session);
  - one <tr data-worker> per worker of `streamvisorctl --json status`,
    with the same state and pid;
  - the run viewer: RUN's snapshot rendered (status, output text, tool
    call and its output, usage, anomalies) and #run-raw equal, as JSON, to
    `streamvisorctl snapshot RUN`;
  - XSS-RUN: every --xss-text visible as text in #run-view, window.__pwned
    undefined, no <img>/<script> element created from data;
  - pause POOL with its button; the dead letters page by page; re-drive
    the dead letter with its retry button; restart VICTIM with its button
    (the shell script checks the pid and the dead letter through
    streamvisorctl); purge the other letters from the newest row; scale
    VICTIM's pool up by one;
  - with --rsock: a dead letter with non-UTF-8 bytes shown escaped and
    re-driven, a 4 MB one and one of 1 MiB of random bytes shown (the page
    stays responsive) and purged, no error in the browser log; a
    supervisor event with non-UTF-8 values shown escaped; with --big-run:
    a run with a multi-MB message rendered, #run-raw holding its tail;
  - an action the daemon refuses shows its message in #message;
  - screenshots DIR/console.png (desktop) and DIR/console-phone.png.
Prints "VICTIM_OLD_PID=N" for the shell script.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except Exception as e:  # pragma: no cover
    print("SKIP: selenium unavailable: %r" % (e,))
    sys.exit(77)

A = None
DRV = None


def check(msg):
    print("# check: " + msg, flush=True)


def ok(msg):
    print("ok - " + msg, flush=True)


def info(msg):
    print("# " + msg, flush=True)


def fail(msg):
    print("FAIL [web_console/console.py]: " + msg, file=sys.stderr, flush=True)
    if DRV is not None:
        try:
            DRV.save_screenshot(os.path.join(A.out, "console-fail.png"))
            body = DRV.find_element(By.TAG_NAME, "body").text
            print("----- page text -----\n" + body[:6000] + "\n----- end -----", file=sys.stderr)
            for e in browser_log():
                print("browser log: %s" % (e,), file=sys.stderr)
        except Exception as e:
            print("(no screenshot: %r)" % (e,), file=sys.stderr)
        try:
            DRV.quit()
        except Exception:
            pass
    sys.exit(1)


def ctl(*args, check_rc=True):
    cmd = shlex.split(A.ctl) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check_rc and p.returncode not in (0, 3):
        fail("%s: exit %d: %s %s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.stdout


def status():
    return json.loads(ctl("--json", "status"))


def wait(what, cond, timeout=20.0, step=0.2):
    """Poll cond() until it returns a true value; fail with what and the
    last value or exception otherwise."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = v
        except WebDriverException as e:
            last = "webdriver: %s" % (str(e).splitlines()[0] if str(e) else repr(e))
        except (KeyError, ValueError, IndexError) as e:
            last = repr(e)
        if time.time() > deadline:
            fail("%s (after %.0f s; last: %s)" % (what, timeout, last))
        time.sleep(step)


def browser_log():
    try:
        return DRV.get_log("browser")
    except Exception:
        return []


def js(script, *args):
    return DRV.execute_script(script, *args)


def text_of(css):
    return js("var e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def message():
    return js("var m = document.getElementById('message');"
              "return {text: m.textContent, kind: m.dataset.kind || '', at: m.dataset.at || '', hidden: m.classList.contains('hidden')};")


def click(css):
    """Click the element css; the console re-renders tables while it polls,
    so an element found may be replaced before the click: find it again."""
    for attempt in range(5):
        try:
            e = DRV.find_element(By.CSS_SELECTOR, css)
            DRV.execute_script("arguments[0].scrollIntoView({block: 'center'});", e)
            if not e.is_enabled():
                fail("button %s is disabled (title: %s)" % (css, e.get_attribute("title")))
            e.click()
            return
        except StaleElementReferenceException:
            if attempt == 4:
                raise
            time.sleep(0.2)


def action(css, what, want_kind="ok", timeout=30):
    """Click a button that posts to /api/v1/ctl; wait for #message to show
    the outcome (kind ok, or error)."""
    before = message()["at"]
    click(css)
    m = wait("%s: #message shows the outcome" % what,
             lambda: (lambda m: m if m["at"] != before and m["kind"] in ("ok", "error") else None)(message()),
             timeout=timeout)
    if m["kind"] != want_kind:
        fail("%s: #message says %r (%s), want %s" % (what, m["text"], m["kind"], want_kind))
    return m


def css_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    global A, DRV
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--run-text", required=True, help="text the run's message holds")
    ap.add_argument("--xss-run", required=True)
    ap.add_argument("--xss-text", action="append", default=[])
    ap.add_argument("--dead-id", required=True)
    ap.add_argument("--dead-stream", required=True)
    ap.add_argument("--dead-total", type=int, required=True, help="dead letters in the stream")
    ap.add_argument("--pause-pool", required=True)
    ap.add_argument("--victim", required=True)
    ap.add_argument("--big-run", help="a run with a multi-MB message")
    ap.add_argument("--big-tail", help="the text the big run's message ends with")
    ap.add_argument("--rsock", help="redis socket: binary and 4 MB dead letters are added after the purge")
    ap.add_argument("--ns", default="sv", help="the namespace (a binary supervisor event goes to NS:supervisor)")
    ap.add_argument("--out", required=True, help="screenshots and chromedriver.log")
    ap.add_argument("--profile", required=True, help="the browser's profile dir (scratch)")
    A = ap.parse_args()
    token = open(A.token_file).read().splitlines()[0]
    os.makedirs(A.out, exist_ok=True)

    check("GET / carries a strict Content-Security-Policy")
    with urllib.request.urlopen(A.url + "/", timeout=20) as r:
        csp = r.headers.get("Content-Security-Policy") or ""
        page = r.read().decode()
    for want in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
        if want not in csp:
            fail("CSP header %r lacks %r" % (csp, want))
    if "unsafe-" in csp:
        fail("CSP header allows unsafe-*: %r" % csp)
    if "<script>" in page or " on" + "load=" in page or "style=" in page:
        fail("index.html has inline script or style")
    ok("CSP: %s" % csp)

    check("headless Chromium starts")
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1800", "--no-first-run", "--disable-extensions",
              "--user-data-dir=" + A.profile):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        DRV = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"),
                                               log_path=os.path.join(A.out, "chromedriver.log")), options=opts)
    except Exception as e:
        print("SKIP: chromium/chromedriver do not start: %s" % (str(e).splitlines()[0] if str(e) else repr(e)))
        sys.exit(77)
    DRV.set_page_load_timeout(30)
    ok("Chromium %s" % DRV.capabilities.get("browserVersion"))

    check("the console loads; the login box is shown")
    DRV.get(A.url + "/")
    wait("app.js ran (the session state is shown)", lambda: text_of("#session-state"))
    wait("the login box is visible", lambda: DRV.find_element(By.ID, "login-section").is_displayed())
    ok("login box shown: %s" % text_of("#session-state"))

    check("a wrong token is refused with a visible message")
    DRV.find_element(By.ID, "token").send_keys("not-the-token-" + "x" * 10)
    click("#login-btn")
    wait("the refusal in #message", lambda: message()["kind"] == "error" and "401" in message()["text"])
    ok("wrong token: %s" % message()["text"])

    check("log in with the token")
    DRV.find_element(By.ID, "token").send_keys(token)
    click("#login-btn")
    wait("logged in", lambda: text_of("#session-state") == "logged in")
    wait("the login box is hidden", lambda: not DRV.find_element(By.ID, "login-section").is_displayed())
    cookies = {c["name"]: c for c in DRV.get_cookies()}
    if "sv_session" not in cookies:
        fail("no sv_session cookie after login: %s" % list(cookies))
    if not cookies["sv_session"].get("httpOnly"):
        fail("sv_session is not HttpOnly: %s" % cookies["sv_session"])
    if js("return document.cookie").find("sv_session") >= 0:
        fail("the session cookie is readable from script")
    if token in DRV.current_url:
        fail("the token is in the URL")
    ok("logged in; sv_session HttpOnly, SameSite %s" % cookies["sv_session"].get("sameSite"))

    check("one row per worker with the state and pid of streamvisorctl status --json")

    def rows_match():
        st = status()
        want = {w["name"]: (w["state"], "" if w.get("pid") is None else str(w["pid"])) for w in st["workers"]}
        got = js("var o = {}; document.querySelectorAll('#workers-body tr[data-worker]').forEach(function (tr) {"
                 " o[tr.dataset.worker] = [tr.querySelector('td.state').textContent, tr.querySelector('td.pid').textContent]; });"
                 " return o;")
        got = {k: (v[0], "" if v[1] == "\u2013" else v[1]) for k, v in got.items()}
        return (want, got) if want == got else None

    want, got = wait("the workers table matches streamvisorctl status", rows_match, timeout=20)
    n = js("return document.querySelectorAll('#workers-body tr').length")
    if n != len(want):
        fail("%d rows for %d workers" % (n, len(want)))
    for cls in ("state", "health", "pid", "uptime", "beat", "status", "doing", "processed", "failed", "restarts", "last-error"):
        if js("return document.querySelectorAll('#workers-body tr[data-worker] td.%s').length" % cls) != n:
            fail("not every worker row has a td.%s" % cls)
    for a in ("restart", "stop", "start"):
        if js("return document.querySelectorAll('#workers-body button.%s[data-action=%s]').length" % (a, a)) != n:
            fail("not every worker row has a %s button" % a)
    ok("%d rows: %s" % (n, ", ".join("%s %s pid %s" % (k, v[0], v[1]) for k, v in sorted(got.items()))))

    check("the run viewer renders %s and its raw JSON" % A.run)
    snap = json.loads(ctl("snapshot", A.run))
    DRV.find_element(By.ID, "run-id").clear()
    DRV.find_element(By.ID, "run-id").send_keys(A.run)
    click("#run-open")
    wait("#run-raw holds the snapshot", lambda: (text_of("#run-raw") or "").strip().startswith("{"))
    raw = json.loads(text_of("#run-raw"))
    if raw != snap:
        fail("#run-raw differs from streamvisorctl snapshot:\n%s\n%s" % (json.dumps(raw)[:2000], json.dumps(snap)[:2000]))
    view = DRV.find_element(By.ID, "run-view").text
    for want in (A.run, snap["status"], A.run_text, "tool_call", "usage", "anomalies"):
        if want not in view:
            fail("#run-view lacks %r:\n%s" % (want, view))
    calls = [i for i in snap["output"] if i.get("type") == "tool_call"]
    outs = [i for i in snap["output"] if i.get("type") == "tool_output"]
    for o in outs:
        if isinstance(o.get("output"), str) and o["output"] not in view:
            fail("#run-view lacks the tool output %r:\n%s" % (o["output"], view))
    if js("return document.querySelectorAll('#run-view li.item-tool_call .tool-output').length") < len(outs):
        fail("tool outputs are not shown under their calls")
    for a in snap.get("anomalies") or []:
        if a.get("message") and a["message"] not in view:
            fail("#run-view lacks the anomaly %r" % a["message"])
    for k, v in (snap.get("usage") or {}).items():
        if str(v) not in view:
            fail("#run-view lacks usage %s = %s" % (k, v))
    ok("%s: status %s, %d items (%d tool calls, %d outputs), usage, %d anomalies; raw JSON equal" %
       (A.run, snap["status"], len(snap["output"]), len(calls), len(outs), len(snap.get("anomalies") or [])))

    check("a run whose output holds markup renders as text and runs nothing")
    imgs0 = js("return document.querySelectorAll('img').length")
    scripts0 = js("return document.querySelectorAll('script').length")
    DRV.find_element(By.ID, "run-id").clear()
    DRV.find_element(By.ID, "run-id").send_keys(A.xss_run)
    click("#run-open")
    wait("#run-view shows the markup as text",
         lambda: all(t in DRV.find_element(By.ID, "run-view").text for t in A.xss_text), timeout=20)
    time.sleep(0.5)  # an onerror would fire by now
    pw = js("return typeof window.__pwned")
    if pw != "undefined":
        fail("window.__pwned is %s: markup from the run was executed" % pw)
    if js("return document.querySelectorAll('img').length") != imgs0:
        fail("an <img> element was created from run data")
    if js("return document.querySelectorAll('script').length") != scripts0:
        fail("a <script> element was created from run data")
    if js("return document.querySelectorAll('#run-view img, #run-view script, #run-view iframe').length"):
        fail("markup elements inside #run-view")
    raw = text_of("#run-raw")
    for t in A.xss_text:
        if json.dumps(t)[1:-1] not in raw and t not in raw:
            fail("#run-raw lacks %r" % t)
    ok("markup shown as text (%s); window.__pwned undefined; no <img>/<script> created" %
       "; ".join(repr(t) for t in A.xss_text))

    if A.big_run:
        check("a run with a multi-MB message: rendered, #run-raw holds its tail")
        DRV.find_element(By.ID, "run-id").clear()
        DRV.find_element(By.ID, "run-id").send_keys(A.big_run)
        t0 = time.time()
        click("#run-open")
        has_tail = ("var e = document.getElementById(arguments[0]); var t = e ? e.textContent : '';"
                    " return t.length > 1000000 && t.indexOf(arguments[1]) >= 0 ? t.length : 0;")
        n = wait("#run-raw holds the big run's tail", lambda: js(has_tail, "run-raw", A.big_tail), timeout=60)
        wait("#run-view holds it too", lambda: js(has_tail, "run-view", A.big_tail), timeout=30)
        t1 = time.time()
        # the page still answers: the workers table keeps polling
        at = js("return document.getElementById('updated').textContent")
        wait("the status poll goes on after the big run", lambda: js("return document.getElementById('updated').textContent") != at,
             timeout=20)
        ok("%s: %d chars in #run-raw, shown in %.1f s; the page still polls" % (A.big_run, n, t1 - t0))

    check("pause pool %s with its button" % A.pause_pool)
    action("#pools-body tr[data-pool=%s] button.pause" % css_str(A.pause_pool), "pause " + A.pause_pool)
    wait("streamvisorctl shows %s paused" % A.pause_pool,
         lambda: all(w["paused"] for w in status()["workers"] if w["pool"] == A.pause_pool))
    wait("the pools table shows it paused",
         lambda: text_of("#pools-body tr[data-pool=%s] td.paused" % css_str(A.pause_pool)) == "yes")
    ok("%s paused" % A.pause_pool)

    check("dead letters page by page (one a page, next/after)")
    lim = DRV.find_element(By.ID, "dead-limit")
    lim.clear()
    lim.send_keys("1")
    ids_js = "return Array.from(document.querySelectorAll('#dead-body tr[data-dead]')).map(function (tr) { return tr.dataset.dead; });"
    click("#dead-load")
    seen = [wait("the first page of one letter", lambda: (lambda v: v[0] if len(v) == 1 else None)(js(ids_js)))]
    while js("return !document.getElementById('dead-next').disabled"):
        if len(seen) > A.dead_total:
            fail("more pages than dead letters: %s" % seen)
        click("#dead-next")
        seen.append(wait("page %d" % (len(seen) + 1),
                         lambda: (lambda v: v[0] if len(v) == 1 and v[0] not in seen else None)(js(ids_js))))
    if len(seen) != A.dead_total or A.dead_id not in seen:
        fail("pages gave %s, want %d letters with %s" % (seen, A.dead_total, A.dead_id))
    click("#dead-first")
    wait("back on the first page", lambda: js(ids_js) == [seen[0]])
    lim.clear()
    lim.send_keys("50")
    ok("%d pages: %s" % (len(seen), ", ".join(seen)))

    check("dead letter %s is listed and re-driven with its retry button" % A.dead_id)
    row = "#dead-body tr[data-dead=%s]" % css_str(A.dead_id)
    click("#dead-load")
    wait("the dead letter's row", lambda: js("return !!document.querySelector(arguments[0])", row))
    reason = text_of(row + " td.reason")
    if not reason or reason == "\u2013":
        fail("the dead letter's row shows no reason")
    info("dead letter row: %s" % js("var tr = document.querySelector(arguments[0]); return tr ? tr.innerText : null;", row))
    click(row + " button.show")
    wait("the dead letter's detail (GET /api/v1/dead/ID) with its fields",
         lambda: (lambda t: t if A.dead_id in t and reason in t and "run" in t else None)(
             DRV.find_element(By.ID, "dead-detail").text))
    action(row + " button.retry", "dead retry " + A.dead_id)
    wait("the row is gone after the retry", lambda: not js("return !!document.querySelector(arguments[0])", row))
    ok("dead letter %s (reason %r) re-driven" % (A.dead_id, reason))

    check("purge from the newest row: that letter and every older one of its stream")
    left = wait("the other letters listed", lambda: js(ids_js) or None)
    before = message()["at"]
    click("#dead-body tr[data-dead=%s] button.purge" % css_str(left[0]))
    wait("the confirmation", lambda: DRV.switch_to.alert)
    confirm_text = DRV.switch_to.alert.text
    DRV.switch_to.alert.accept()
    wait("#message shows the purge's outcome",
         lambda: (lambda m: m if m["at"] != before and m["kind"] in ("ok", "error") else None)(message()))
    if message()["kind"] != "ok":
        fail("purge: %s" % message()["text"])
    wait("no dead letter left in the table", lambda: js(ids_js) == [])
    ok("purged %s (asked: %r)" % (", ".join(left), confirm_text))

    if A.rsock:
        check("a binary dead letter and a 4 MB one: listed, shown escaped, the page stays responsive")
        here = os.path.dirname(os.path.abspath(__file__))
        p = subprocess.run([sys.executable, os.path.join(here, "webdata.py"), "deadletters", A.rsock, A.dead_stream,
                            "--run-prefix", "wc"], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            fail("webdata.py deadletters: %s %s" % (p.stdout, p.stderr))
        dd = json.loads(p.stdout)
        bin_row = "#dead-body tr[data-dead=%s]" % css_str(dd["bin"])
        big_row = "#dead-body tr[data-dead=%s]" % css_str(dd["big"])
        click("#dead-load")
        rnd_row = "#dead-body tr[data-dead=%s]" % css_str(dd["rnd"])
        wait("the three rows", lambda: js(ids_js) == [dd["rnd"], dd["big"], dd["bin"]], timeout=30)
        fields = text_of(bin_row + " td.fields")
        for want in ("\\xc3(bin=\\xff\\xfe\\x00a\\xe2(\\xa1\\x80", "note=nul\\x00inside \U0001F600 and \\xed\\xa0\\x80"):
            if want not in fields:
                fail("the binary letter's fields cell lacks %r: %r" % (want, fields))
        reason = text_of(bin_row + " td.reason")
        if reason != "bad \\xff\\xfe reason":
            fail("the binary letter's reason cell: %r" % reason)
        bigf = text_of(big_row + " td.fields")
        if "data={\"blob\":\"yyy" not in bigf or len(bigf) > 2000:
            fail("the 4 MB letter's fields cell: %r" % bigf[:400])
        click(bin_row + " button.show")
        wait("the binary letter's detail, escaped",
             lambda: (lambda t: t if dd["bin"] in t and "\\xff\\xfe\\x00a\\xe2(\\xa1\\x80" in t and "\\xc3(bin" in t else None)(
                 js("return document.getElementById('dead-detail').textContent")))
        t0 = time.time()
        click(big_row + " button.show")
        n = wait("the 4 MB letter's detail",
                 lambda: js("var t = document.getElementById('dead-detail').textContent;"
                            " return t.indexOf(arguments[0]) >= 0 && t.indexOf('yyyyyyyy') >= 0 ? t.length : 0;",
                            "dead letter " + dd["big"]), timeout=60)
        info("4 MB letter's detail: %d chars in %.1f s (%s)" % (n, time.time() - t0, "the rest left to streamvisorctl"
             if "larger than one reply" in js("return document.getElementById('dead-detail').textContent") else "whole"))
        t0 = time.time()
        click(rnd_row + " button.show")
        n2 = wait("the random-bytes letter's detail",
                  lambda: js("var t = document.getElementById('dead-detail').textContent;"
                             " return t.indexOf(arguments[0]) >= 0 && t.indexOf('blob\\\\xff') >= 0 ? t.length : 0;",
                             "dead letter " + dd["rnd"]), timeout=60)
        info("1 MiB of random bytes: %d chars of escaped text in %.1f s" % (n2, time.time() - t0))
        action(bin_row + " button.retry", "dead retry of the binary letter %s" % dd["bin"], timeout=60)
        wait("the binary row is gone", lambda: js(ids_js) == [dd["rnd"], dd["big"]], timeout=30)
        before = message()["at"]
        click(rnd_row + " button.purge")
        wait("the confirmation", lambda: DRV.switch_to.alert)
        DRV.switch_to.alert.accept()
        wait("#message shows the purge's outcome",
             lambda: (lambda m: m if m["at"] != before and m["kind"] in ("ok", "error") else None)(message()), timeout=60)
        if message()["kind"] != "ok":
            fail("purge of the 4 MB letter: %s" % message()["text"])
        wait("no dead letter left in the table", lambda: js(ids_js) == [], timeout=30)
        bad = [e for e in browser_log() if e.get("level") == "SEVERE" and
               any(k in e.get("message", "") for k in ("Uncaught", "render:", "Content Security Policy"))]
        if bad:
            fail("browser log after the odd dead letters: %s" % bad)
        ok("binary letter escaped and re-driven; 4 MB letter shown (%d chars), 1 MiB of random bytes (%d chars); "
           "purged; no browser error" % (n, n2))

    check("an action the daemon refuses shows its message in #message")
    # through the UI: a second retry of the same letter from a stale row
    js("var tb = document.getElementById('dead-body');"
       "var tr = document.createElement('tr'); tr.dataset.dead = arguments[0]; tr.dataset.stream = arguments[1];"
       "var td = document.createElement('td'); var b = document.createElement('button');"
       "b.type = 'button'; b.className = 'retry'; b.dataset.action = 'dead retry'; b.id = 'stale-retry'; b.textContent = 'retry';"
       "td.appendChild(b); tr.appendChild(td); tb.appendChild(tr);", A.dead_id, A.dead_stream)
    m = action("#stale-retry", "a second dead retry of " + A.dead_id, want_kind="error")
    if "409" not in m["text"]:
        fail("the refusal is not a 409: %r" % m["text"])
    if not DRV.find_element(By.ID, "message").is_displayed():
        fail("#message is not visible")
    js("var b = document.getElementById('stale-retry'); if (b) b.closest('tr').remove();")
    ok("refusal shown: %s" % m["text"])

    check("restart %s with its button" % A.victim)
    old = [w for w in status()["workers"] if w["name"] == A.victim][0]
    print("VICTIM_OLD_PID=%s" % old["pid"], flush=True)
    action("#workers-body tr[data-worker=%s] button.restart" % css_str(A.victim), "restart " + A.victim)
    wait("the row shows a new pid, RUNNING",
         lambda: (lambda tr: tr and tr[0] == "RUNNING" and tr[1] not in ("", "\u2013", str(old["pid"])))(
             js("var tr = document.querySelector(arguments[0]); return tr ? [tr.querySelector('td.state').textContent,"
                " tr.querySelector('td.pid').textContent] : null;", "#workers-body tr[data-worker=%s]" % css_str(A.victim))),
         timeout=30)
    ok("%s restarted: pid %s -> %s in the table" % (A.victim, old["pid"], text_of(
        "#workers-body tr[data-worker=%s] td.pid" % css_str(A.victim))))

    pool = A.victim.split("/")[1]
    check("scale pool %s up by one with its input and button" % pool)
    n0 = len([w for w in status()["workers"] if w["pool"] == pool])
    inp = DRV.find_element(By.CSS_SELECTOR, "#pools-body tr[data-pool=%s] input.scale-count" % css_str(pool))
    inp.clear()
    inp.send_keys(str(n0 + 1))
    action("#pools-body tr[data-pool=%s] button.scale" % css_str(pool), "scale %s %d" % (pool, n0 + 1))
    new = "%s/%d" % (A.victim.rsplit("/", 1)[0], n0)
    wait("streamvisorctl shows %s RUNNING" % new,
         lambda: any(w["name"] == new and w["state"] == "RUNNING" for w in status()["workers"]), timeout=30)
    wait("the table has a row for %s" % new,
         lambda: js("return !!document.querySelector(arguments[0])", "#workers-body tr[data-worker=%s]" % css_str(new)))
    ok("%s scaled to %d: %s in the table" % (pool, n0 + 1, new))

    check("sparklines and supervisor events")
    wait("three sparklines", lambda: js("return document.querySelectorAll('#charts-section svg.sparkline polyline').length") == 3)
    sup = None
    if A.rsock:
        p = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "webdata.py"),
                            "supevent", A.rsock, A.ns], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            fail("webdata.py supevent: %s %s" % (p.stdout, p.stderr))
        sup = json.loads(p.stdout)
    click("#events-refresh")
    wait("the events table answered", lambda: js("return document.querySelectorAll('#events-body tr').length") > 0)
    if sup:
        row = "#events-body tr[data-id=%s]" % css_str(sup["id"])
        wait("the binary supervisor event's row", lambda: js("return !!document.querySelector(arguments[0])", row))
        w, ch, det = text_of(row + " td.worker"), text_of(row + " td.change"), text_of(row + " td.details")
        if w != sup["worker"] or sup["to"] not in ch or sup["reason"] not in det:
            fail("the binary supervisor event is shown as %r / %r / %r, want %r, %r, %r" %
                 (w, ch, det, sup["worker"], sup["to"], sup["reason"]))
        info("binary supervisor event: %s | %s | %s" % (w, ch, det))
    ok("sparklines drawn; events: %s" % (text_of("#events-body tr") or "")[:200])

    check("no CSP violation or script error in the browser log")
    bad = [e for e in browser_log() if e.get("level") == "SEVERE" and
           ("Content Security Policy" in e.get("message", "") or "Uncaught" in e.get("message", ""))]
    if bad:
        fail("browser log: %s" % bad)
    ok("browser log clean of CSP violations and uncaught errors")

    check("screenshots")
    DRV.execute_script("window.scrollTo(0, 0)")
    shot = os.path.join(A.out, "console.png")
    DRV.save_screenshot(shot)
    DRV.set_window_size(390, 1600)
    time.sleep(0.5)
    if js("return document.documentElement.scrollWidth") > 390 + 20:
        info("phone width: the page is %d px wide (tables scroll)" % js("return document.documentElement.scrollWidth"))
    phone = os.path.join(A.out, "console-phone.png")
    DRV.save_screenshot(phone)
    for f in (shot, phone):
        with open(f, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                fail("%s is not a PNG" % f)
    ok("screenshots %s, %s" % (shot, phone))

    check("log out")
    click("#logout")
    wait("logged out", lambda: text_of("#session-state") != "logged in")
    ok("logged out")
    DRV.quit()
    DRV = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
