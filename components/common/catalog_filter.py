"""Hard filters over a catalog's products: keywords and label expressions.

Keywords search only what a shopper sees of a product (KEYWORD_COLUMNS), never file names
or other hidden columns. Words are compared after a small suffix stemmer ("dresses" and
"dress" are one word); a word of 3 letters or more also matches the start of a longer one
("jack" finds "jacket"), ranked below a whole-word match. Every word must match.

Label expressions test catalog columns: `category=hat`, `(color=red OR color=blue) AND
brand=X`, with `=` and `!=`, AND binding tighter than OR, parentheses, and values quoted
when they hold spaces or brackets (`location="Aisle 7, accessories"`). Keys and values are
compared case-insensitively.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from components.common.errors import VisualSearchError

# Searched by keywords: the item's shown text, plus two optional catalog columns meant for it.
KEYWORD_COLUMNS = ("title", "category", "location", "description", "tags")
_FIELD_WEIGHT = {"title": 3.0, "category": 2.0}  # the others weigh 1
PREFIX_MIN_LETTERS = 3
PREFIX_WEIGHT = 0.5  # a prefix match counts half a whole-word match
MAX_KEYWORDS = 16  # distinct words searched at once
MAX_KEYWORD_BYTES = 512  # of the text typed (UTF-8)
MAX_LABEL_BYTES = 1024  # of a label expression
_WORD = re.compile(r"\w+")


class KeywordError(VisualSearchError, ValueError):
    """Keywords that cannot be searched: no words, too many, or too long a text."""


class LabelError(VisualSearchError, ValueError):
    """A label expression that does not parse, or names a column no product has."""


def stem(word: str) -> str:
    """A light English suffix stemmer for plurals: dresses -> dress, shoes -> shoe,
    skirts -> skirt, accessories -> accessory; words of 3 letters or fewer are left alone."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("shes", "sh"), ("ches", "ch"), ("xes", "x")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            return word[: -len(suffix)] + replacement
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower())]


def keyword_words(text: str) -> list[str]:
    """The distinct stemmed words of `text` (KeywordError if none, too many or too long)."""
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_KEYWORD_BYTES:
        raise KeywordError(f"the keywords are {size} bytes long; the limit is {MAX_KEYWORD_BYTES} bytes")
    distinct = list(dict.fromkeys(words(text)))
    if not distinct:
        raise KeywordError("the keywords hold no words to search for (at least one word is needed)")
    if len(distinct) > MAX_KEYWORDS:
        raise KeywordError(f"{len(distinct)} different words; search with at most {MAX_KEYWORDS}")
    return distinct


def product_text(product: dict) -> dict[str, list[str]]:
    """{column: stemmed words} of the KEYWORD_COLUMNS a product has (extra columns included)."""
    extra = product.get("extra") or {}
    return {
        column: words(str(product.get(column) or extra.get(column) or ""))
        for column in KEYWORD_COLUMNS
        if product.get(column) or extra.get(column)
    }


class KeywordIndex:
    """Keyword search over products (each a {column: words} from product_text)."""

    def __init__(self, texts: list[dict[str, list[str]]]):
        self._texts = texts
        self._document_frequency: dict[str, int] = {}
        for text in texts:
            for word in {w for column_words in text.values() for w in column_words}:
                self._document_frequency[word] = self._document_frequency.get(word, 0) + 1
        self._vocabulary = sorted(self._document_frequency)

    def search(self, text: str) -> list[int]:
        """Positions of the products matching every word of `text`, most relevant first."""
        query = keyword_words(text)
        expansions = {word: self._expand(word) for word in query}
        scored = []
        for position, product in enumerate(self._texts):
            total = 0.0
            for word in query:
                score = self._score(product, expansions[word])
                if score == 0:
                    break
                total += score
            else:
                scored.append((-total, position))
        return [position for _, position in sorted(scored)]

    def _expand(self, word: str) -> dict[str, float]:
        """{vocabulary word: weight} that `word` matches: itself, and longer words it starts."""
        found = {word: 1.0} if word in self._document_frequency else {}
        if len(word) >= PREFIX_MIN_LETTERS:
            start = _first_at_or_after(self._vocabulary, word)
            for other in self._vocabulary[start:]:
                if not other.startswith(word):
                    break
                found.setdefault(other, PREFIX_WEIGHT)
        count = max(len(self._texts), 1)
        return {w: weight * math.log(1 + count / self._document_frequency[w]) for w, weight in found.items()}

    @staticmethod
    def _score(product: dict[str, list[str]], expansion: dict[str, float]) -> float:
        best = 0.0
        for column, column_words in product.items():
            weight = _FIELD_WEIGHT.get(column, 1.0)
            for w in column_words:
                best = max(best, weight * expansion.get(w, 0.0))
        return best


def _first_at_or_after(sorted_words: list[str], word: str) -> int:
    low, high = 0, len(sorted_words)
    while low < high:
        middle = (low + high) // 2
        if sorted_words[middle] < word:
            low = middle + 1
        else:
            high = middle
    return low


# --- label expressions -----------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<op>!=|=)|"(?P<quoted>[^"]*)"|'(?P<squoted>[^']*)'|(?P<bare>[^\s()=!"']+))"""
)


@dataclass(frozen=True)
class Test:
    key: str
    value: str
    equal: bool = True

    def matches(self, columns: dict[str, str]) -> bool:
        return (columns.get(self.key, "") == self.value) == self.equal

    def keys(self) -> set[str]:
        return {self.key}


@dataclass(frozen=True)
class AnyOf:
    parts: tuple

    def matches(self, columns: dict[str, str]) -> bool:
        return any(part.matches(columns) for part in self.parts)

    def keys(self) -> set[str]:
        return set().union(*(part.keys() for part in self.parts))


@dataclass(frozen=True)
class AllOf(AnyOf):
    def matches(self, columns: dict[str, str]) -> bool:
        return all(part.matches(columns) for part in self.parts)


def label_columns(product: dict) -> dict[str, str]:
    """A product's columns as a label expression sees them: lower-case keys and values,
    `id` for the item id, the catalog's other columns beside the known ones."""
    extra = product.get("extra") or {}
    columns = {str(k).lower(): str(v) for k, v in extra.items() if v not in (None, "")}
    for name, value in product.items():
        if name not in ("extra", "thumbnail", "item_id", "faiss_id") and value not in (None, ""):
            columns[name] = str(value)
    columns["id"] = str(product.get("item_id", ""))
    return {k: v.strip().lower() for k, v in columns.items()}


def parse_labels(text: str):
    """The expression in `text` (LabelError naming what is wrong and where)."""
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_LABEL_BYTES:
        raise LabelError(f"the label filter is {size} bytes long; the limit is {MAX_LABEL_BYTES} bytes")
    tokens = _tokens(text)
    if not tokens:
        raise LabelError("the label filter is empty (write e.g. category=hat)")
    expression, at = _or(tokens, 0, text)
    if at < len(tokens):
        kind, value, offset = tokens[at]
        raise LabelError(f"label filter {text!r}: unexpected {value!r} at position {offset + 1}")
    return expression


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, value, offset): kind is (, ), op, value, AND or OR."""
    tokens, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        found = _TOKEN.match(text, at)
        if found is None:
            raise LabelError(f"label filter {text!r}: cannot read {text[at:].strip()[:20]!r}")
        kind = found.lastgroup
        value = found.group(kind)
        start = found.start(kind) - (1 if kind in ("quoted", "squoted") else 0)
        if kind == "bare" and value.upper() in ("AND", "OR"):
            kind = value.upper()
        else:
            kind = {"open": "(", "close": ")", "bare": "value", "squoted": "quoted"}.get(kind, kind)
        tokens.append((kind, value, start))
        at = found.end()
    return tokens


def _or(tokens, at, text):
    return _joined(tokens, at, text, "OR", _and, AnyOf)


def _and(tokens, at, text):
    return _joined(tokens, at, text, "AND", _factor, AllOf)


def _joined(tokens, at, text, operator, parse_part, combine):
    """parts separated by `operator`, each read by `parse_part`: one part alone, or `combine`d."""
    parts = []
    while True:
        part, at = parse_part(tokens, at, text)
        parts.append(part)
        if at < len(tokens) and tokens[at][0] == operator:
            at += 1
            continue
        return (parts[0] if len(parts) == 1 else combine(tuple(parts))), at


def _factor(tokens, at, text):
    if at >= len(tokens):
        raise LabelError(f"label filter {text!r}: ends where a key=value test or '(' is expected")
    kind, value, offset = tokens[at]
    if kind == "(":
        expression, at = _or(tokens, at + 1, text)
        if at >= len(tokens) or tokens[at][0] != ")":
            raise LabelError(f"label filter {text!r}: the '(' at position {offset + 1} is never closed")
        return expression, at + 1
    if kind != "value":
        raise LabelError(
            f"label filter {text!r}: expected a key=value test at position {offset + 1}, found {value!r}"
        )
    if at + 1 >= len(tokens) or tokens[at + 1][0] != "op":
        raise LabelError(f"label filter {text!r}: {value!r} at position {offset + 1} needs =value or !=value")
    if at + 2 >= len(tokens) or tokens[at + 2][0] not in ("value", "quoted"):
        raise LabelError(f"label filter {text!r}: {value}{tokens[at + 1][1]} has no value")
    return Test(value.lower(), tokens[at + 2][1].strip().lower(), tokens[at + 1][1] == "="), at + 3
