"""The rule for names and labels: compared and stored in Unicode NFC; no invisible or control characters.

A name that looks the same is the same name: `café` typed as one code point or as `e` plus a
combining accent are one model. Characters that cannot be seen or that change how text around them
reads are refused: control characters (NUL, newlines, tabs, ...), format characters (zero-width
spaces and joiners, the byte-order mark, bidirectional overrides such as U+202E), line and paragraph
separators, and lone surrogates. A model name must also hold something besides spaces.
"""
from __future__ import annotations

import unicodedata
from typing import Any

_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
LABEL_LISTS = ("Tag", "Labels")


def problem(text: str) -> str | None:
    """Why a name or label cannot be used, or None."""
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"must not contain the invisible or control character U+{ord(char):04X}"
    return None


def nfc(value: Any) -> Any:
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


def normalized(fields: dict[str, Any]) -> dict[str, Any]:
    """A request body with ModelName and label keys and values in NFC (anything else is left as sent)."""
    out = dict(fields)
    if "ModelName" in out:
        out["ModelName"] = nfc(out["ModelName"])
    for name in LABEL_LISTS:
        labels = out.get(name)
        if isinstance(labels, list):
            out[name] = [{k: nfc(v) if k in ("Key", "Value") else v for k, v in label.items()} if isinstance(label, dict)
                         else label for label in labels]
    return out
