"""Personal data in text blocks: e-mail addresses, phone numbers and IP addresses replaced by
placeholders (as datatrove's PIIFormatter does for e-mails and IPs), or left alone (`pii.enabled:
false`). Each document's replacements are counted in its `pii_replaced` column (null when the
step is off); the operator's stats count them by kind.

What is matched (precision first: a date, a price or an article number must not become a phone):
- e-mail: `local@domain.tld` (letters, digits and `._%+-` before the @, a dotted domain with a
  top-level label of 2+ letters);
- IPv4: four dot-separated numbers 0-255 not inside a longer dotted number (a version string
  1.2.3.4.5 is left alone); IPv6: eight hex groups, or a `::`-compressed form (fe80::1);
- phone: a number written as one (7-15 digits in groups separated by spaces, dots, dashes or a
  parenthesised area code) that starts with `+` and a country code, or has a parenthesised
  area code, or follows a word that announces a phone (tel, phone, fax, mobile, telefon, tél,
  teléfono, ...). Bare digit groups (`2024 12 05`, `1.299,00`) are never phones.

Placeholders keep the text readable and show where something was: `pii.email_placeholder`
(default `<EMAIL>`), `pii.phone_placeholder` (`<PHONE>`), `pii.ip_placeholder` (`<IP>`).
Runs after block cleaning, so quality signals, dedup keys and the published text all see the
redacted text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from operators.base import Operator, Resources
from operators.io.schema import put_column


@dataclass(frozen=True)
class PiiConfig:
    enabled: bool = False             # configs/nightly.yaml (Common Crawl) switches it on
    emails: bool = True
    phones: bool = True
    ips: bool = True
    email_placeholder: str = "<EMAIL>"
    phone_placeholder: str = "<PHONE>"
    ip_placeholder: str = "<IP>"

    def __post_init__(self):
        for k in ("email_placeholder", "phone_placeholder", "ip_placeholder"):
            v = getattr(self, k)
            if not isinstance(v, str):
                raise ValueError(f"pii.{k} must be a string, not {v!r}")


EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d]|\.\d)")
_H = r"[0-9A-Fa-f]{1,4}"
IPV6 = re.compile(rf"(?<![\w:])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,6}}:(?:{_H}:){{0,5}}{_H}"
                  rf"|(?:{_H}:){{2,7}}:|::(?:{_H}:){{1,6}}{_H})(?![\w:])")
_GROUPS = r"\d{1,4}(?:[ .\-]?\d{1,4}){1,5}"
_ANNOUNCED = (r"(?:tel|tel\.|phone|telephone|fax|mobile|mob|cell|call|hotline|telefon|telefono|"
              r"teléfono|téléphone|tél|tél\.|handy|fon|whatsapp)")
PHONE = re.compile(
    rf"(?<![\w+])\+\d{{1,3}}[ .\-]?(?:\(\d{{1,5}}\)[ .\-]?)?{_GROUPS}(?!\w)"        # +49 30 1234567
    rf"|(?<![\w(])\(\d{{2,5}}\)[ .\-]?{_GROUPS}(?!\w)")                             # (030) 123 4567
PHONE_ANNOUNCED = re.compile(rf"(\b{_ANNOUNCED}\s?[:.]?\s?)(\(?\d[\d ()./\-]{{5,20}}\d)(?!\w)", re.IGNORECASE)


def _digits_ok(number: str) -> bool:
    n = sum(ch.isdigit() for ch in number)
    return 7 <= n <= 15


# cheap gates: a phone or an IPv4 address holds a run of 7+ characters of digits and separators
_NUMBER_RUN = re.compile(r"\d[\d ()./\-]{5,}\d")
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d")


def redact(text: str, config: PiiConfig) -> tuple[str, dict[str, int]]:
    """`text` with the matches replaced, and {kind: replacements}."""
    counts = {"emails": 0, "phones": 0, "ips": 0}
    if config.emails and "@" in text:
        text, counts["emails"] = EMAIL.subn(config.email_placeholder, text)
    if config.ips and ("::" in text or text.count(":") >= 7):
        text, counts["ips"] = IPV6.subn(config.ip_placeholder, text)
    if not _NUMBER_RUN.search(text):
        return text, counts
    if config.ips and _IPV4_HINT.search(text):
        text, n4 = IPV4.subn(config.ip_placeholder, text)
        counts["ips"] += n4
    if config.phones:
        def sub(m: re.Match) -> str:
            if not _digits_ok(m.group(0)):
                return m.group(0)
            counts["phones"] += 1
            return config.phone_placeholder

        def announced(m: re.Match) -> str:
            if not _digits_ok(m.group(2)):
                return m.group(0)
            counts["phones"] += 1
            return m.group(1) + config.phone_placeholder
        if "+" in text or "(" in text:
            text = PHONE.sub(sub, text)
        text = PHONE_ANNOUNCED.sub(announced, text)
    return text, counts


class RedactPII(Operator):
    """Replaces personal data in `texts` and fills `pii_replaced`; rows are neither dropped nor
    reordered; image positions (null texts) stay null."""

    name = "pii"
    resources = Resources(num_cpus=1.0)

    def __init__(self, config: PiiConfig):
        super().__init__()
        self.config = config

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        self.stats.incr("in", n)
        if not self.config.enabled or n == 0:
            replaced = [None] * n
        else:
            texts = table["texts"].to_pylist()
            replaced = []
            totals = {"emails": 0, "phones": 0, "ips": 0}
            changed = False
            for r, blocks in enumerate(texts):
                k = 0
                for i, t in enumerate(blocks or ()):
                    if t:
                        new, counts = redact(t, self.config)
                        if new != t:
                            blocks[i] = new
                            changed = True
                        for key, v in counts.items():
                            totals[key] += v
                            k += v
                replaced.append(k)
            for key, v in totals.items():
                self.stats.incr(f"replaced_{key}", v)
            self.stats.incr("documents_with_pii", sum(1 for k in replaced if k))
            if changed:
                table = put_column(table, "texts", texts)
        table = put_column(table, "pii_replaced", replaced)
        self.stats.incr("out", n)
        return table
