"""PII: e-mails, phone numbers and IP addresses in text blocks replaced by placeholders, counted."""
from __future__ import annotations

import pyarrow as pa
import pytest

from operators.text.pii import PiiConfig, RedactPII, redact
from operators.io.schema import DOCUMENT, validate_documents
from tests.factories import doc_row

ON = PiiConfig(enabled=True)


@pytest.mark.parametrize("text,want,counts", [
    ("Write to jane.doe+news@mail.example.co.uk today.", "Write to <EMAIL> today.", (1, 0, 0)),
    ("Call +49 30 1234567 or +1 (555) 123-4567.", "Call <PHONE> or <PHONE>.", (0, 2, 0)),
    ("Tel: 030 123 45 67, Fax: (030) 123-4568", "Tel: <PHONE>, Fax: <PHONE>", (0, 2, 0)),
    ("Telefon 0171/2345678", "Telefon <PHONE>", (0, 1, 0)),
    ("The server 192.168.1.20 answered", "The server <IP> answered", (0, 0, 1)),
    ("from 2001:db8::8a2e:370:7334 and fe80::1", "from <IP> and <IP>", (0, 0, 2)),
])
def test_what_is_replaced(text, want, counts):
    got, n = redact(text, ON)
    assert got == want and (n["emails"], n["phones"], n["ips"]) == counts


@pytest.mark.parametrize("text", [
    "Published 2024 12 05 at 12:30:45, price 1.299,00 €",
    "Order no. 12345678, ISBN 978-3-16-148410-0, version 1.2.3.4.5, 256.1.1.1",
    "user@localhost, @handle, a@b",
    "Tel: 112",                       # too few digits for a phone
    "In 1989 there were 80 000 000 people",
])
def test_what_is_left_alone(text):
    assert redact(text, ON) == (text, {"emails": 0, "phones": 0, "ips": 0})


def test_kinds_can_be_switched_off_and_placeholders_chosen():
    cfg = PiiConfig(enabled=True, phones=False, email_placeholder="email@example.com")
    got, n = redact("a.b@c.org, +44 20 7946 0958", cfg)
    assert got == "email@example.com, +44 20 7946 0958" and n["phones"] == 0


def test_operator_counts_per_document_and_keeps_alignment():
    rows = [doc_row(id="a", texts=["Mail me: x@y.com or +33 1 23 45 67 89", None, "plain"],
                    images=[None, "https://i.example/a.png", None], image_info=[None, {"alt": "a"}, None]),
            doc_row(id="b", texts=["nothing here"], images=[None], image_info=[None]),
            doc_row(id="c", texts=[], images=[], image_info=[])]
    table = pa.Table.from_pylist(rows, schema=DOCUMENT)
    op = RedactPII(ON)
    out = validate_documents(op(table)).to_pylist()
    assert out[0]["texts"] == ["Mail me: <EMAIL> or <PHONE>", None, "plain"] and out[0]["pii_replaced"] == 2
    assert out[0]["images"] == rows[0]["images"]
    assert [r["pii_replaced"] for r in out[1:]] == [0, 0]
    c = op.stats.counters
    assert (c["replaced_emails"], c["replaced_phones"], c["replaced_ips"], c["documents_with_pii"]) == (1, 1, 0, 1)


def test_off_leaves_the_text_and_a_null_count():
    table = pa.Table.from_pylist([doc_row(id="a", texts=["x@y.com"], images=[None], image_info=[None])],
                                 schema=DOCUMENT)
    out = RedactPII(PiiConfig()).__call__(table).to_pylist()[0]
    assert out["texts"] == ["x@y.com"] and out["pii_replaced"] is None


def test_on_in_the_common_crawl_config_and_in_the_chain():
    from pathlib import Path

    from flows.pipeline import chain
    from flows.config import load_config
    root = Path(__file__).resolve().parents[1]
    nightly = load_config(root / "configs/nightly.yaml")
    assert nightly.pii.enabled and not load_config(root / "configs/local.yaml").pii.enabled
    names = [op.name for op in chain(nightly, "r")]
    assert names.index("clean") < names.index("pii") < names.index("quality")
