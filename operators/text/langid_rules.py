"""The second opinion of language ID, and the conventions of its codes.

lid.176 (fastText) is the first opinion. It is asked again, by lingua (`lingua-language-detector`,
low-accuracy mode: trigram models of 75 languages, ~140 MB, its models inside the wheel), where
lid.176 is unsure (score below `langid.consult_below`) or names a language of a group it confuses
(`CONFUSABLE`: Malay/Indonesian, Afrikaans/Dutch). lingua's answer is taken when it names a
language lid.176 does not know or is weak at (`LINGUA_STRONG`), or one of lid.176's own top
candidates; otherwise lid.176's answer stands, and below `langid.min_confidence` the text is
`und` (undetermined): a language neither model can name is not forced into a wrong label.
The score stays lid.176's (`decided_score`), so `select.min_language_score` keeps its meaning.
Then alphabet and marker-word checks settle what neither model can (`settle`):

- Malay against Indonesian: both models call most Malay Indonesian. Spellings and words that
  differ between the two standards (kerana/karena, bahawa/bahwa, wang/uang, kerajaan/pemerintah,
  Ogos/Agustus, -iti/-itas, ...) are counted; the side with more wins, a tie keeps the model's.
- Tigrinya against Amharic (both in Ethiopic script; lid.176 knows only Amharic, lingua neither):
  letters Amharic does not use (the ቐ and ኸ series) and Tigrinya's ኣ-initial spelling and
  function words (ኣብ, እዩ, ናይ, ምስ) against Amharic's (ነው, እና, ውስጥ, አ-initial words).
- Oromo (neither model knows it; lingua calls it Somali): Oromo function words (fi, kan, akka,
  keessatti, irratti, ...) against Somali's (iyo, waxaa, ayaa, oo, ...), when the answer is one of
  the languages Oromo text lands on.
- Vietnamese needs a letter only Vietnamese uses (ă â đ ê ô ơ ư): lingua calls some Yoruba
  (which also writes dots below) Vietnamese; without one, its next candidate is taken. Where
  lid.176 is unsure, two of Yoruba's dotted letters (ẹ ọ ṣ) without a Vietnamese letter make it
  Yoruba (lid.176 calls Yoruba Irish or Catalan, lingua sometimes Afrikaans).

Codes: ISO 639-1 where one exists, ISO 639-3 otherwise (lid.176's own labels: `en`, `als`,
`ceb`, ...), with two merges (`MERGED`): Bosnian, Croatian, Serbian and lid.176's Serbo-Croatian
are one label, `hbs` (the ISO 639-3 macrolanguage; no model here tells Bosnian from Croatian
reliably: on the lingua test sentences lingua gets Bosnian documents right 28% of the time),
whatever the script; Norwegian Bokmål is `no` (lid.176's label for it; lingua's `nb`), and
Nynorsk stays `nn`. The same conventions hold for `language`, `language_top3` and
`text_languages`. bench/langid_accuracy.py measures every rule; bench/RESULTS.md has the figures.
"""
from __future__ import annotations

import re
import unicodedata

MERGED = {"bs": "hbs", "hr": "hbs", "sr": "hbs", "sh": "hbs", "nb": "no"}
# lid.176 labels whose answer is always checked (it calls Malay Indonesian, and Afrikaans Dutch)
CONFUSABLE = frozenset({"ms", "id", "af", "nl"})
# lid.176 answers the rules may change even when it is sure: the confusable ones, Amharic (Tigrinya),
# Vietnamese (Yoruba), Somali (a block of an Oromo document)
CHECKED_WHEN_SURE = CONFUSABLE | frozenset({"am", "vi", "so"})
# lingua's answer is taken for these even when lid.176 did not have them among its candidates:
# languages lid.176 does not know, and those it is weak at on the test sentences
LINGUA_ONLY = frozenset({"lg", "mi", "sn", "st", "tn", "ts", "xh", "zu"})
LINGUA_STRONG = LINGUA_ONLY | frozenset({"so", "yo", "af", "ga"})
RULE_ONLY = frozenset({"om", "ti"})       # named by the marker checks alone
SOURCES = ("fasttext", "lingua", "markers")


def canonical(code: str | None) -> str | None:
    """A model's label in this stage's code system (`MERGED`)."""
    return MERGED.get(code, code) if code else code


def merged_pairs(pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """lid.176's (label, probability) candidates in canonical codes; merged labels add up
    (hr 0.5 + sh 0.3 -> hbs 0.8), best first."""
    if not any(label in MERGED for label, _ in pairs):
        return pairs
    out: dict[str, float] = {}
    for label, p in pairs:
        code = MERGED.get(label, label)
        out[code] = min(out.get(code, 0.0) + p, 1.0)
    return sorted(out.items(), key=lambda kv: -kv[1])


# languages one text is often mistaken for the other of (a block follows its document there)
_SIBLINGS = {"ms": "ms-id", "id": "ms-id", "am": "am-ti", "ti": "am-ti", "so": "so-om", "om": "so-om"}


def sibling(code: str | None) -> str | None:
    return _SIBLINGS.get(code) if code else None


_SCORE_GROUPS = {**_SIBLINGS, "af": "af-nl", "nl": "af-nl"}


def decided_score(code: str, pairs: list[tuple[str, float]], fallback: float) -> float:
    """`language_score` of a label lingua or a rule decided: lid.176's probability of it (of its
    confusion group, for ms/id, af/nl, am/ti, so/om: lid.176 is sure of the group, not of the
    member), so that `select.min_language_score` keeps its meaning (FineWeb's 0.65 is a fastText
    threshold); `fallback` (the second opinion's confidence) where lid.176 cannot name it."""
    if code in LINGUA_ONLY or code in RULE_ONLY:
        return fallback
    group = _SCORE_GROUPS.get(code)
    s = sum(p for c, p in pairs if (_SCORE_GROUPS.get(c) == group if group else c == code))
    return min(s, 1.0) if s > 0 else fallback


# ---------------------------------------------------------------------------------------------
# lingua

class Lingua:
    """lingua over all its 75 languages, low-accuracy mode, loaded on first use."""

    def __init__(self):
        self._detector = None

    def top(self, text: str, k: int = 3) -> list[tuple[str, float]]:
        """Up to k (code, confidence) pairs, best first, in lingua's ISO 639-1 codes (not merged)."""
        if self._detector is None:
            try:
                from lingua import LanguageDetectorBuilder
            except ImportError as e:
                raise ValueError("langid.second_opinion: lingua needs the lingua-language-detector package "
                                 f"(pip install lingua-language-detector): {e}") from e
            self._detector = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
        values = self._detector.compute_language_confidence_values(text)
        return [(v.language.iso_code_639_1.name.lower(), float(v.value)) for v in values[:k]]


# ---------------------------------------------------------------------------------------------
# alphabet and marker-word checks

_WORDS = re.compile(r"\w+")

_MS_ID = [  # (Malay, Indonesian): the standards' different spellings and words for the same thing
    ("kerana", "karena"), ("bahawa", "bahwa"), ("mahu", "mau"), ("sahaja", "saja"), ("wang", "uang"),
    ("kerajaan", "pemerintah"), ("selepas", "setelah"), ("iaitu", "yaitu"), ("syarikat", "perusahaan"),
    ("pejabat", "kantor"), ("kereta", "mobil"), ("teksi", "taksi"), ("polis", "polisi"),
    ("universiti", "universitas"), ("cuba", "coba"), ("percuma", "gratis"), ("jabatan", "departemen"),
    ("ogos", "agustus"), ("julai", "juli"), ("disember", "desember"), ("isnin", "senin"),
    ("khamis", "kamis"), ("jumaat", "jumat"), ("nombor", "nomor"), ("doktor", "dokter"),
    ("filem", "film"), ("muzik", "musik"), ("kualiti", "kualitas"), ("aktiviti", "aktivitas"),
    ("komuniti", "komunitas"), ("projek", "proyek"), ("eksport", "ekspor"), ("pelbagai", "berbagai"),
    ("ahli", "anggota"), ("mesyuarat", "rapat"), ("boleh", "bisa"), ("kenyataan", "pernyataan"),
    ("terbaharu", "terbaru"), ("awak", "kamu"), ("sesetengah", "sejumlah"), ("kakitangan", "karyawan"),
]
# words of one standard with no counterpart above (Malay: "whereas", "through", "Mr"; Indonesian:
# colloquial negation and intensifier)
_MS_WORDS = frozenset([m for m, _ in _MS_ID] + ["manakala", "menerusi", "encik", "bagaimanapun"])
_ID_WORDS = frozenset([i for _, i in _MS_ID] + ["nggak", "enggak", "banget"])
_MS_SUFFIX = re.compile(r"\w{3,}iti\b")    # kualiti, universiti, aktiviti
_ID_SUFFIX = re.compile(r"\w{3,}itas\b")   # kualitas, universitas, aktivitas

# (not the short ones, fi "and", kan, ni, hin: those are everyday Yoruba words too)
_OM_WORDS = frozenset("akka keessa keessatti irratti irraa waliin kana isaan inni isheen garuu yookaan "
                      "yeroo ture jira jiru qaba qabu jedhe jechuun booda gara hunda oromoo kanaaf "
                      "akkasumas "
                      # possessives, "that", "even", "until", "since", "while", "but", "this too",
                      # "those", "called", "after", "so": none of them a Somali word
                      "isaa ishii ishee isaanii sana illee hanga erga osoo ammoo immoo kunis kanneen "
                      "jedhu jedhamu booddee egaa".split())
_SO_WORDS = frozenset("iyo waxaa waa ayaa oo ee uu ay ugu soo sida waxay ahaa ah inay laga kale "
                      "kuwa xilli markii wuxuu ayuu".split())
_OROMO_LOOKALIKES = frozenset({"so", "la", "yo", "lg", "fi", "en", "et", "und"})

_ETHIOPIC = re.compile(r"[\u1200-\u137f]")
# scripts none of lingua's 75 languages is written in (Ethiopic, Sinhala, Myanmar, Khmer, Lao,
# Tibetan, Kannada, Malayalam, Oriya, Thaana, Syriac): lingua would answer a Latin-script language
NOT_LINGUA_SCRIPTS = re.compile(r"[\u1200-\u137f\u0d80-\u0dff\u1000-\u109f\u1780-\u17ff\u0e80-\u0eff"
                                r"\u0f00-\u0fff\u0c80-\u0cff\u0d00-\u0d7f\u0b00-\u0b7f\u0780-\u07bf\u0700-\u074f]")
_TI_LETTERS = re.compile(r"[\u1250-\u1256\u12b8-\u12be]")   # the ቐ and ኸ series
_TI_WORDS = frozenset("ኣብ እዩ ኢዩ ናይ ምስ ኣሎ እዚ እቲ ከኣ ኣይ".split())
_AM_WORDS = frozenset("ነው እና ውስጥ ላይ ግን ይህ ወደ እንደ ነበር ይሆናል".split())

_VI_MARKS = frozenset("\u0306\u0302\u031b")   # breve, circumflex, horn (NFD), besides đ


def _vietnamese_letters(text: str) -> bool:
    if "đ" in text or "Đ" in text:
        return True
    return any(ch in _VI_MARKS for ch in unicodedata.normalize("NFD", text))


def _yoruba_letters(text: str) -> bool:
    """At least two of Yoruba's dotted letters (ẹ ọ ṣ: a dot below in NFD)."""
    nfd = unicodedata.normalize("NFD", text)
    return sum(1 for i in range(1, len(nfd)) if nfd[i] == "\u0323" and nfd[i - 1] in "eosEOS") >= 2


_TONED = frozenset("\u0300\u0301")    # grave, acute (NFD)


def _yoruba_tones(text: str) -> bool:
    """Yoruba written without its dots below still marks tone on most syllables (Èyí ni ìgbà kejì
    tí ... Nàìjírìa): at least 8 toned vowels, a fifth of all vowels, 4 of them a low tone on i, o
    or u (French, Spanish and Portuguese put no grave there) and 4 inside a word (Italian marks
    only a word's last vowel), and not pinyin (its third tone, the caron, which Yoruba does not
    use; Yoruba's mid tone may be a macron)."""
    nfd = unicodedata.normalize("NFD", text.lower())
    if nfd.count("\u030c") >= 2:
        return False
    vowels = toned = low_iou = inner = 0
    n = len(nfd)
    for i, ch in enumerate(nfd):
        if ch in "aeiou":
            vowels += 1
            mark = nfd[i + 1] if i + 1 < n else ""
            if mark in _TONED:
                toned += 1
                low_iou += mark == "\u0300" and ch in "iou"
                j = i + 2
                while j < n and unicodedata.combining(nfd[j]):
                    j += 1
                inner += j < n and nfd[j].isalpha()
    return toned >= 8 and 5 * toned >= vowels and low_iou >= 4 and inner >= 4


def plausible(code: str, text: str) -> bool:
    """An answer the text's letters allow (Vietnamese needs one of its own letters)."""
    return code != "vi" or _vietnamese_letters(text)


def malay_or_indonesian(text: str) -> str | None:
    """"ms" or "id" by the marker words and suffixes, or None on a tie."""
    words = _WORDS.findall(text.lower())
    ms = sum(w in _MS_WORDS for w in words) + len(_MS_SUFFIX.findall(text.lower()))
    id_ = sum(w in _ID_WORDS for w in words) + len(_ID_SUFFIX.findall(text.lower()))
    return "ms" if ms > id_ else "id" if id_ > ms else None


def oromo(text: str) -> bool:
    """Oromo function words clearly outnumber Somali ones (at least 2, and twice as many)."""
    words = _WORDS.findall(text.lower())
    om = sum(w in _OM_WORDS for w in words)
    so = sum(w in _SO_WORDS for w in words)
    return om >= 2 and om >= 2 * so


def _mostly_ethiopic(text: str) -> bool:
    """At least half of the letters in Ethiopic script."""
    ethiopic = len(_ETHIOPIC.findall(text))
    return ethiopic > 0 and 2 * ethiopic >= sum(1 for ch in text if ch.isalpha())


def tigrinya(text: str) -> bool:
    """Ethiopic-script text written as Tigrinya rather than Amharic."""
    words = text.split()
    ti = len(_TI_LETTERS.findall(text)) + sum(w in _TI_WORDS or w.startswith("ኣ") for w in words)
    am = sum(w in _AM_WORDS or w.startswith("አ") for w in words)
    return ti > am


def settle(code: str | None, text: str, unsure: bool, candidates: list[str]) -> tuple[str | None, bool]:
    """(code, changed) after the alphabet and marker checks; `code` is canonical, `unsure`: lid.176
    was below `consult_below`; `candidates`: the deciding model's next answers, best first."""
    if code == "vi" and not _vietnamese_letters(text):
        nxt = next((c for c in candidates if c != "vi"), None)
        return canonical(nxt), True
    if unsure and code != "yo" and (_yoruba_letters(text) or _yoruba_tones(text)) and \
            not _vietnamese_letters(text):
        return "yo", True
    if code in ("ms", "id"):
        side = malay_or_indonesian(text)
        if side is not None and side != code:
            return side, True
        return code, False
    if code == "am" and _ETHIOPIC.search(text) and tigrinya(text):
        return "ti", True
    if code not in ("am", "ti") and _mostly_ethiopic(text):
        # lid.176 names no other language written in Ethiopic: a page of Amharic or Tigrinya
        # with a Latin alphabet table in it is not Bikol
        return ("ti" if tigrinya(text) else "am"), True
    if unsure and code in _OROMO_LOOKALIKES and oromo(text):
        return "om", True
    return code, False
