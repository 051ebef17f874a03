from operators.io.urls import (
    best_srcset_url, is_data_uri, is_placeholder, parse_dimension, parse_srcset, resolve_base,
    resolve_url, url_key,
)

PAGE = "https://example.com/dir/page.html"


def test_resolve_relative_paths():
    assert resolve_url(PAGE, "img/a.jpg") == "https://example.com/dir/img/a.jpg"
    assert resolve_url(PAGE, "/img/a.jpg") == "https://example.com/img/a.jpg"
    assert resolve_url(PAGE, "../a.jpg") == "https://example.com/a.jpg"


def test_resolve_protocol_relative_and_host_case():
    assert resolve_url(PAGE, "//CDN.Example.org/x.png") == "https://cdn.example.org/x.png"
    assert resolve_url("http://example.com/", "//cdn.example.org/x.png") == \
        "http://cdn.example.org/x.png"


def test_resolve_drops_fragment_and_whitespace():
    assert resolve_url(PAGE, "  /a.jpg#frag ") == "https://example.com/a.jpg"
    assert resolve_url(PAGE, "/a\n/b.jpg") == "https://example.com/a/b.jpg"
    assert resolve_url(PAGE, "/a b.jpg") == "https://example.com/a%20b.jpg"


def test_resolve_rejects_non_http():
    for raw in ("javascript:void(0)", "mailto:a@b.c", "data:image/png;base64,AAAA", "#top",
                "", None, "ftp://example.com/a.jpg", "http://", "http:///nohost"):
        assert resolve_url(PAGE, raw) is None, raw


def test_resolve_absolute_kept():
    assert resolve_url(PAGE, "https://other.org/p/q.jpg?x=1") == "https://other.org/p/q.jpg?x=1"
    assert resolve_url(None, "https://Other.org") == "https://other.org/"
    assert resolve_url(None, "relative.jpg") is None


def test_resolve_base():
    assert resolve_base(PAGE, "/static/") == "https://example.com/static/"
    assert resolve_base(PAGE, "https://cdn.example.net/b/") == "https://cdn.example.net/b/"
    assert resolve_base(PAGE, None) == PAGE
    assert resolve_base(PAGE, "javascript:x") == PAGE


def test_parse_srcset_descriptors():
    assert parse_srcset("a.jpg 300w, b.jpg 600w") == [("a.jpg", 300.0, None), ("b.jpg", 600.0, None)]
    assert parse_srcset("a.jpg, b.jpg 2x") == [("a.jpg", None, None), ("b.jpg", None, 2.0)]
    assert parse_srcset("") == [] and parse_srcset(None) == []


def test_parse_srcset_urls_with_commas():
    srcset = "https://cdn.x/w_300,h_200/a.jpg 300w, https://cdn.x/w_900,h_600/a.jpg 900w"
    assert [u for u, _, _ in parse_srcset(srcset)] == [
        "https://cdn.x/w_300,h_200/a.jpg", "https://cdn.x/w_900,h_600/a.jpg"]


def test_parse_srcset_without_space_after_comma():
    assert [u for u, _, _ in parse_srcset("a.jpg 1x,b.jpg 2x")] == ["a.jpg", "b.jpg"]


def test_best_srcset_url():
    assert best_srcset_url("s.jpg 320w, l.jpg 1024w, m.jpg 640w") == "l.jpg"
    assert best_srcset_url("a.jpg 1x, b.jpg 3x, c.jpg 2x") == "b.jpg"
    assert best_srcset_url("only.jpg") == "only.jpg"
    assert best_srcset_url("data:image/gif;base64,R0 1x, real.jpg 2x") == "real.jpg"
    assert best_srcset_url("") is None


def test_placeholders():
    assert is_placeholder("data:image/gif;base64,R0lGOD")
    assert is_placeholder("/img/spacer.gif")
    assert is_placeholder("https://x.org/assets/lazy-placeholder.png")
    assert is_placeholder("blank.gif?v=1")
    assert is_placeholder("")
    assert not is_placeholder("https://x.org/photos/beach.jpg")
    assert is_placeholder("/media/2007/0809/20070809__tspacer.gif")
    assert is_placeholder("/img/1x1transparent.gif")
    assert is_placeholder("/v2002/\\v2002\\Contenidos\\todos_logos\\spacer.gif")
    # a photo whose long name holds such a word
    assert not is_placeholder("/uploads/2018/03/Vaubel_2000Pixel056-e1540106438822.jpg")
    assert not is_placeholder("/reviews/google-pixel-7-review-hands-on.jpg")
    assert is_data_uri(" DATA:image/png;base64,xx") and not is_data_uri("https://a/b.png")


def test_parse_dimension():
    assert parse_dimension("300") == 300
    assert parse_dimension("300px") == 300
    assert parse_dimension(" 12.7 ") == 12
    assert parse_dimension("50%") is None
    assert parse_dimension("auto") is None
    assert parse_dimension(None) is None


def test_url_key_same_page_same_key():
    assert url_key("HTTP://Example.COM:80/a/b?x=1#top") == "example.com/a/b?x=1"
    assert url_key("https://example.com") == "example.com/"
    assert url_key("http://example.com/") == url_key("https://example.com:443") == "example.com/"
    assert url_key("https://user:pw@Example.com/p") == "example.com/p"


def test_url_key_keeps_what_can_differ():
    assert url_key("https://www.example.com/a") == "www.example.com/a"  # www. is not stripped
    assert url_key("https://example.com:8080/a") == "example.com:8080/a"
    assert url_key("https://example.com/A/b/?y=2&x=1") == "example.com/A/b/?y=2&x=1"  # case, slash, order
    assert url_key("https://example.com/a?") == "example.com/a"
    assert url_key("http://[::1]:8000/x") == "[::1]:8000/x"


def test_url_key_rejects_non_http():
    for url in (None, "", "   ", "ftp://example.com/a", "mailto:a@b.c", "example.com/a", "http://",
                "https://example.com:99999/", "javascript:void(0)"):
        assert url_key(url) is None, url
