"""Shared pieces of the property-based fuzz tests: budgets, byte mutations and the invariant.

Budgets: by default (CI) every test runs a small, fixed set of cases (``derandomize=True``), a
few dozen per parser, so that the whole folder takes well under a minute. ``RETDM_FUZZ=full``
(``make fuzz``) selects the ``fuzz`` profile: ``FULL_EXAMPLES`` random cases per parser, split
between the tests that fuzz it (``budget``), a new seed each run (Hypothesis prints the seed and a ``@reproduce_failure`` blob when one fails);
``RETDM_FUZZ_EXAMPLES`` changes that number.

The invariant every parser is held to: it returns a valid label table (read back with the
project's own reader), or raises ``DataError``/``ConfigError`` with one line naming the file (or
key); any other exception fails the test, and an error leaves nothing behind in the output folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FULL = os.environ.get("RETDM_FUZZ", "") == "full"
TARGET_EXAMPLES = 10_000  # what `make fuzz` must reach per parser to pass
FULL_EXAMPLES = int(os.environ.get("RETDM_FUZZ_EXAMPLES", TARGET_EXAMPLES))  # per parser under RETDM_FUZZ=full
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=50, derandomize=True, **_COMMON)
settings.register_profile("fuzz", max_examples=FULL_EXAMPLES, derandomize=False, **_COMMON)
settings.load_profile("fuzz" if FULL else "ci")


# The parsers `make fuzz` must drive through ≥ TARGET_EXAMPLES cases each, and the tests that fuzz
# each one (a parser with two tests splits its cases between them).
PARSERS = {
    "CSV importer (`folder`)": ("test_valid_csv_reads_back_exactly", "test_mutated_csv_keeps_the_invariant"),
    "ARFF and XML readers (`mulan`)": ("test_valid_arff_reads_back_exactly",
                                       "test_mutated_arff_or_xml_keeps_the_invariant"),
    "COCO importer": ("test_coco", "test_coco_json_structure"),
    "VOC importer": ("test_voc",),
    "MIRFLICKR importer": ("test_mirflickr",),
    "NUS-WIDE importer": ("test_nuswide",),
    "scene importer": ("test_scene",),
    "`--set` overrides": ("test_set_overrides",),
    "`params.yaml`": ("test_params_yaml",),
    "archive extraction": ("test_generated_archives", "test_plain_archives_extract_exactly_or_damaged_ones_cleanly"),
}


def parser_of(test: str) -> str:
    """The ``PARSERS`` entry that ``test`` (a test function's name) fuzzes."""
    return next(name for name, tests in PARSERS.items() if test in tests)


def budget(ci_examples: int, parser: str) -> settings:
    """``@budget(n, parser)``: ``n`` cases per CI run (fixed seed); under ``RETDM_FUZZ=full`` that
    parser's share of ``FULL_EXAMPLES`` (all of it, or half where two tests fuzz the parser)."""
    return settings(max_examples=-(-FULL_EXAMPLES // len(PARSERS[parser])) if FULL else ci_examples)


# Bytes that parsers treat specially: separators, quotes, line ends, BOM, NUL, invalid UTF-8,
# a digit that str.isdigit() accepts but int() refuses, ARFF/XML syntax.
SPECIAL = (b",", b'"', b"'", b"\n", b"\r\n", b"\r", b"\t", b" ", b"\x00", b"\xff", b"\xef\xbb\xbf", b"0", b"1",
           b"-1", b"2", "²".encode(), "é".encode(), b"{", b"}", b"%", b"@", b"?", b"<", b">", b"&", b"/", b"\\",
           b".", b"nan", b"inf", b"1e309", b"=", b":", b"[", b"#")
payloads = st.one_of(st.sampled_from(SPECIAL), st.binary(max_size=6),
                     st.text(max_size=4).map(lambda s: s.encode("utf-8", "surrogatepass")))


@st.composite
def mutated(draw, blob: bytes, max_edits: int = 3) -> bytes:
    """``blob`` with 1 to ``max_edits`` random edits: bytes inserted, deleted or replaced, a bit
    flipped, a line duplicated or dropped, or the whole truncated."""
    out = bytearray(blob)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(("insert", "delete", "replace", "flip", "dup_line", "drop_line", "truncate")))
        at = draw(st.integers(0, len(out)))
        if op == "flip" and at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            out[at:at] = draw(payloads)
        elif op == "delete":
            del out[at:at + draw(st.integers(1, 4))]
        elif op == "replace":
            out[at:at + draw(st.integers(1, 4))] = draw(payloads)
        elif op in ("dup_line", "drop_line"):
            lines = bytes(out).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines[k:k + 1] = [lines[k], lines[k]] if op == "dup_line" else []
            out = bytearray(b"\n".join(lines))
        else:
            del out[at:]
    return bytes(out)


def files_under(folder: Path) -> dict[str, int]:
    """Every entry below ``folder`` (relative path → size, -1 for a folder); empty if it does not exist."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (-1 if p.is_dir() and not p.is_symlink() else p.lstat().st_size)
            for p in folder.rglob("*")}


def expect_clean_error(err: Exception, names: list[str | os.PathLike], out_dir: Path, before: dict[str, int]) -> None:
    """The error half of the invariant: one line, naming one of ``names``, and ``out_dir`` as it was."""
    message = str(err)
    assert "\n" not in message.strip(), f"the message is not one line: {message!r}"
    assert any(str(n) in message for n in names), f"the message names none of {[str(n) for n in names]}: {message}"
    assert files_under(out_dir) == before, f"an error left files behind in {out_dir}: {files_under(out_dir)}"
