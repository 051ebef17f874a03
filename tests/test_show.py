"""flows.show: documents as Markdown in reading order, and as self-contained HTML pages."""
from __future__ import annotations

import base64

import pytest

from flows.show import image_note, main, to_html, to_markdown

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def doc(**over):
    d = {"id": "d1", "url": "https://example.com/a", "title": "A  page\n title", "language": "en",
         "language_source": "fasttext", "num_texts": 2, "num_images": 2, "drop_reason": None,
         "texts": ["First <b>paragraph</b>.", None, None, "Last one."],
         "images": [None, "https://img.example/x (1).png", "https://img.example/y.jpg", None],
         "image_info": [None,
                        {"alt": "a [bracketed]\nalt", "status": "ok", "sha256": "s1", "fetched_width": 64,
                         "fetched_height": 48, "format": "png", "nsfw": 0.015, "clip": None},
                        {"alt": None, "status": "not_fetched", "sha256": None, "width": 300, "height": 200},
                        None]}
    d.update(over)
    return d


def test_markdown_is_the_document_in_reading_order():
    md = to_markdown(doc()).splitlines()
    assert md[0] == "# A page title"
    assert "en (fasttext)" in md[2] and "2 images" in md[2] and "id d1" in md[2]
    body = [line for line in md[4:] if line]
    assert body == ["First <b>paragraph</b>.",
                    "![a (bracketed) alt](https://img.example/x%20%281%29.png)",
                    "*image: ok, 64×48, png, nsfw 0.01*",
                    "![](https://img.example/y.jpg)",
                    "*image: not_fetched, declared 300×200*",
                    "Last one."]


def test_image_note_says_why_an_image_failed():
    assert image_note({"status": "http_error", "http_status": 404}) == "http_error, HTTP 404"
    assert image_note(None) == "not resolved"


def test_html_is_self_contained_with_stored_copies_and_escapes_the_text():
    page = to_html(doc(), {"s1": PNG})
    assert page.startswith("<!DOCTYPE html>") and "<b>" not in page and "&lt;b&gt;paragraph" in page
    assert 'src="data:image/png;base64,' in page                   # the stored copy, embedded
    assert 'src="https://img.example/y.jpg"' in page and "original URL" in page
    assert page.index("First") < page.index("data:image/png") < page.index("y.jpg") < page.index("Last one")


def test_every_document_of_the_sample_run_renders(flow_output, tmp_path, capsys):
    from flows.query import connect
    out, _ = flow_output
    con = connect(str(out))
    n = con.sql("SELECT count(*) FROM documents").fetchone()[0]
    assert main([str(out), "--sample", str(n + 5), "--html", str(tmp_path / "html")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n---\n") == n - 1 and printed.count("![") >= 16
    pages = sorted(p.name for p in (tmp_path / "html").glob("*.html"))
    assert len(pages) == n + 1 and "index.html" in pages
    ids = [r[0] for r in con.sql("SELECT id FROM documents ORDER BY id").fetchall()]
    assert main([str(out), "--id", ids[0]]) == 0 and f"id {ids[0]}" in capsys.readouterr().out
    stored = sum(p.read_text().count("data:image/") for p in (tmp_path / "html").glob("*.html"))
    assert stored >= 10                                      # the sample's images from the WARC, embedded
    assert main([str(out), "--sample", "1", "--where", "no_such_column = 1"]) == 2
    assert main([str(out), "--url", "https://nowhere.example/"]) == 1
    assert main([str(tmp_path / "missing")]) == 2


def _chromium():
    import shutil
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_the_html_pages_render_in_a_real_browser_with_their_images(flow_output, tmp_path):
    """Headless Chromium (Debian's package; `make browser` installs it) loads every page flows.show
    writes for the sample run: every embedded stored copy decodes (naturalWidth > 0), the text is
    there in reading order, and a screenshot is not blank."""
    import re
    import subprocess

    from PIL import Image
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium: `make browser` installs it (apt-get install chromium)")
    out, _ = flow_output
    folder = tmp_path / "html"
    assert main([str(out), "--sample", "100", "--where", "num_images > 0", "--html", str(folder)]) == 0
    pages = sorted(p for p in folder.glob("*.html") if p.name != "index.html")
    assert len(pages) >= 5
    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "document.body.dataset.images=im.length;"
             "document.body.dataset.decoded=im.filter(i=>i.complete&&i.naturalWidth>0).length;"
             "document.body.dataset.order=[...document.body.querySelectorAll('p,figure')]"
             ".map(e=>e.tagName[0]).join('')});</script>")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files",
             "--virtual-time-budget=3000"]
    embedded = 0
    for page in pages:
        html = page.read_text(encoding="utf-8")
        stored = html.count('src="data:image/')
        probed = tmp_path / f"probe-{page.name}"
        probed.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
        dom = subprocess.run([browser, *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True,
                             timeout=120).stdout
        attrs = dict(re.findall(r'data-(images|decoded|order)="([^"]*)"', dom))
        assert int(attrs["images"]) == html.count("<img ") and int(attrs["decoded"]) >= stored, (page.name, attrs)
        embedded += stored
        assert attrs["order"].startswith("P") and "F" in attrs["order"]   # header paragraph, then figures among text
    assert embedded >= 10   # the sample's images from its WARC, each decoded by the browser
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=900,1400", pages[0].as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = Image.open(shot).convert("L")
    assert img.size == (900, 1400)
    lo, hi = img.getextrema()
    assert lo < 100 and hi > 200                         # dark text and images on a light page, not blank
