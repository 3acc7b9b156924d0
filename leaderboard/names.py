"""Method names: one normal form to store, and look-alike keys to compare them (Unicode TR 39).

A method's name is what the leaderboard shows, so two methods whose names look the same
("PatchCore" and "PatchCоre" with a Cyrillic о, "ＰａｔｃｈＣｏｒｅ" in full-width letters,
"patchcore", "Patch-Core", "PatchC0re") must not both exist: the second would pass for the
first. Names are stored in NFKC form with single spaces (:func:`method_name_normalise`) and
compared through two keys (:func:`method_name_keys`), each the TR 39 *confusable skeleton*
(UTS #39 section 4, "Confusable Detection") of the name, case-folded, with spaces, dashes and
connector punctuation (``_``) removed:

* the **folded key** case-folds before taking the skeleton (NFKC_Casefold first, as the
  issue's rule says: "PADIM" and "PaDiM" are one name);
* the **cased key** takes the skeleton of the name as written, then case-folds, so that
  capital I and small l, which TR 39 maps together, still clash ("Input" and "lnput").

Two names clash when either key is equal. The skeleton comes from ICU's spoof checker
(``icu.SpoofChecker.getSkeleton``, PyICU): ICU is the reference implementation of UTS #39 and
ships the ``confusables.txt`` data of the Unicode version it was built with
(:data:`UNICODE_VERSION`). Folding repeats until nothing changes, because a case-folded
exemplar may itself have a prototype (Greek capitals fold to letters that map to Latin ones).

Characters that draw nothing or reorder text (controls, format characters such as zero-width
joiners and bidirectional overrides, private-use and unassigned code points) are refused
rather than silently dropped.

Imports nothing of ours (the bottom of the leaderboard's layers).
"""

from __future__ import annotations

import unicodedata

import icu

#: The Unicode version of ICU's confusables data (what the skeleton follows).
UNICODE_VERSION: str = str(icu.UNICODE_VERSION)
ICU_VERSION: str = str(icu.ICU_VERSION)

#: General categories a method name may not contain (controls, format, surrogates, private use,
#: unassigned, line and paragraph separators).
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Categories removed from the comparison keys: spaces, dashes, connector punctuation (``_``).
IGNORED_IN_KEYS = frozenset({"Zs", "Pd", "Pc"})

_CHECKER = icu.SpoofChecker()


class MethodNameError(ValueError):
    """A method name that cannot be used; the message says why."""


def _char_name(ch: str) -> str:
    return unicodedata.name(ch, "") or {"Cc": "control character", "Cn": "unassigned", "Co": "private use"}.get(
        unicodedata.category(ch), "character"
    )


def method_name_normalise(name: object) -> str:
    """``name`` in NFKC form, runs of white space as one space, stripped.

    Raises :class:`MethodNameError` for an empty name and for characters of
    :data:`REFUSED_CATEGORIES` (each named by its code point and Unicode name).
    """
    text = unicodedata.normalize("NFKC", str(name if name is not None else ""))
    bad = [ch for ch in text if unicodedata.category(ch) in REFUSED_CATEGORIES and not ch.isspace()]
    if bad:
        shown = ", ".join(f"U+{ord(ch):04X} {_char_name(ch)}" for ch in dict.fromkeys(bad))
        raise MethodNameError(
            f"the method name contains invisible or control characters ({shown}); type it with visible characters only"
        )
    text = " ".join(text.split())
    if not text:
        raise MethodNameError("give the method's name")
    return text


def confusable_skeleton(text: str) -> str:
    """The TR 39 skeleton of ``text`` (case-sensitive, as ICU computes it; NFD output)."""
    return _CHECKER.getSkeleton(0, text)


def _fold(text: str) -> str:
    """Skeleton then case fold, repeated until stable (at most a few rounds)."""
    for _ in range(4):
        folded = unicodedata.normalize("NFD", confusable_skeleton(text).casefold())
        if folded == text:
            break
        text = folded
    return "".join(ch for ch in text if unicodedata.category(ch) not in IGNORED_IN_KEYS)


def method_name_keys(name: object) -> tuple[str, str]:
    """``(folded key, cased key)`` of a method name; two names clash when either key is equal.

    Both are computed from the NFKC form (:func:`method_name_normalise`, whose errors they
    raise). The folded key case-folds before the skeleton, the cased key after it.
    """
    text = method_name_normalise(name)
    return _fold(text.casefold()), _fold(text)
