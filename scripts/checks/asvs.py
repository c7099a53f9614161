#!/usr/bin/env python3
"""Checks the OWASP ASVS 4.0.3 table in docs/security.md against the code.

    python3 scripts/checks/asvs.py               check the table, then the self-test
    python3 scripts/checks/asvs.py --self-test   the self-test alone

The table sits between the markers `<!-- asvs-table:start -->` and
`<!-- asvs-table:end -->`; its columns are requirement id, what it asks, status,
evidence. Every problem is reported, one line each, and the exit status is 1 when
there is any:

- a row that is not four cells, or a status other than `met`, `not met` or
  `not applicable`;
- a requirement id listed twice, or the table not holding exactly the Level 2
  requirements of V2, V3, V7 and V13 (EXPECTED_SPEC below, from ASVS 4.0.3);
- a `met` row that names no test, or a row of another status with no reason;
- a test reference (`path::name` in backticks, e.g.
  `crates/e2e/tests/routes.rs::signin_failures_are_indistinguishable`) whose file
  does not exist, or whose file has no test of that name. A test is, in a Rust file,
  a `fn` under `#[test]` or `#[tokio::test]` (proptest's blocks included), or a
  name listed in an invocation of a test-generating macro of this repository
  (a `macro_rules!` whose body holds `#[test]`, such as `both_backends!`) that the
  file also defines as a `fn`; in a Python check script, a `def`.

Then the self-test runs the same check over altered in-memory copies of the table
(a renamed test, a missing file, a helper that is not a test, a met row without a
test, a bad status, a duplicate, a missing requirement) and fails unless each
alteration is caught, so the check cannot pass by checking nothing.

Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = Path("docs/security.md")
START = "<!-- asvs-table:start -->"
END = "<!-- asvs-table:end -->"
STATUSES = ("met", "not met", "not applicable")

# ASVS 4.0.3, Level 2, chapters V2, V3, V7 and V13: every requirement with a
# Level 2 mark (deleted ones, 7.3.2, 13.1.2 and 13.2.4, have none). "a.b.c-d" is
# a.b.c to a.b.d.
EXPECTED_SPEC = """
    2.1.1-12 2.2.1-3 2.3.1-3 2.4.1-5 2.5.1-7 2.6.1-3 2.7.1-6 2.8.1-7 2.9.1-3 2.10.1-4
    3.1.1 3.2.1-4 3.3.1-4 3.4.1-5 3.5.1-3 3.7.1
    7.1.1-4 7.2.1-2 7.3.1 7.3.3-4 7.4.1-3
    13.1.1 13.1.3-5 13.2.1-3 13.2.5-6 13.3.1-2 13.4.1-2
"""

# `path::name` in backticks. Anything else in backticks that contains `::` is
# reported as malformed rather than silently ignored.
BACKTICKED = re.compile(r"`([^`]*)`")
TEST_REF = re.compile(r"^(?P<path>[A-Za-z0-9_./-]+\.(?:rs|py))::(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
REQ_ID = re.compile(r"^\d+\.\d+\.\d+$")

TEST_ATTR = re.compile(r"^\s*#\[(?:tokio::)?test(?:\(.*\))?\]\s*$")
TEST_ATTR_AND_FN = re.compile(r"^\s*#\[(?:tokio::)?test(?:\(.*\))?\]\s*(?:pub\s+)?(?:async\s+)?fn\s+([A-Za-z_]\w*)")
OTHER_ATTR = re.compile(r"^\s*#!?\[.*\]\s*$")
RUST_FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+([A-Za-z_]\w*)")
PY_DEF = re.compile(r"^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
MACRO_DEF = re.compile(r"macro_rules!\s*([A-Za-z_]\w*)\s*\{")


def expected_ids() -> list[str]:
    ids = []
    for item in EXPECTED_SPEC.split():
        base, _, last = item.partition("-")
        prefix, _, first = base.rpartition(".")
        for n in range(int(first), int(last or first) + 1):
            ids.append(f"{prefix}.{n}")
    return ids


def id_key(req: str) -> tuple[int, ...]:
    return tuple(int(part) for part in req.split("."))


# --------------------------------------------------------------------- the code


def balanced(text: str, open_at: int) -> str | None:
    """The text inside the bracket at `open_at` up to its match (no string awareness:
    enough for macro bodies and invocation lists)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    opener = text[open_at]
    closer = pairs[opener]
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == opener:
            depth += 1
        elif text[i] == closer:
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


@dataclass
class Code:
    """What the repository declares as tests, read once per file."""

    root: Path
    _macros: set[str] | None = None
    _files: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)

    def test_macros(self) -> set[str]:
        """Names of the repository's `macro_rules!` that generate `#[test]` functions."""
        if self._macros is None:
            self._macros = set()
            for path in sorted(p for top in ("crates", "components") for p in (self.root / top).rglob("*.rs")):
                if "target" in path.relative_to(self.root).parts:
                    continue
                text = path.read_text(encoding="utf-8", errors="replace")
                for match in MACRO_DEF.finditer(text):
                    body = balanced(text, match.end() - 1) or ""
                    if re.search(r"#\[(?:tokio::)?test\b", body):
                        self._macros.add(match.group(1))
        return self._macros

    def declared(self, rel: str) -> tuple[set[str], set[str]]:
        """(test names, every fn/def name) of the file at `rel`."""
        if rel not in self._files:
            text = (self.root / rel).read_text(encoding="utf-8", errors="replace")
            if rel.endswith(".py"):
                names = {m.group(1) for line in text.splitlines() if (m := PY_DEF.match(line))}
                self._files[rel] = (names, names)
            else:
                self._files[rel] = self._rust(text)
        return self._files[rel]

    def _rust(self, text: str) -> tuple[set[str], set[str]]:
        tests: set[str] = set()
        fns: set[str] = set()
        pending = False
        for line in text.splitlines():
            stripped = line.strip()
            one_line = TEST_ATTR_AND_FN.match(line)
            if one_line:
                tests.add(one_line.group(1))
                fns.add(one_line.group(1))
                pending = False
                continue
            fn = RUST_FN.match(line)
            if fn:
                fns.add(fn.group(1))
                if pending:
                    tests.add(fn.group(1))
                pending = False
            elif TEST_ATTR.match(line):
                pending = True
            elif pending and (OTHER_ATTR.match(line) or stripped.startswith("//") or not stripped):
                continue  # attributes, doc comments and blank lines between #[test] and its fn
            else:
                pending = False
        # Cases of a test-generating macro: `both_backends!(a, b)` or `latch_e2e::both_backends!(...)`.
        for macro in self.test_macros():
            for match in re.finditer(rf"(?<![\w$]){re.escape(macro)}!\s*([(\[{{])", text):
                inside = balanced(text, match.end(1) - 1) or ""
                inside = re.sub(r"//[^\n]*", "", inside)
                for name in re.split(r"[\s,]+", inside):
                    # The macro calls `super::name(...)`: it is a test only if the file defines it.
                    if re.fullmatch(r"[A-Za-z_]\w*", name) and name in fns:
                        tests.add(name)
        return tests, fns


# --------------------------------------------------------------------- the table


@dataclass
class Row:
    line: int
    req: str
    status: str
    evidence: str
    refs: list[tuple[str, str]]


def split_cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|"):
        body = body[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def check(doc_text: str, code: Code, doc_name: str = str(DOC)) -> tuple[list[str], list[Row]]:
    """Every problem of the table in `doc_text`, and its rows."""
    problems: list[str] = []
    lines = doc_text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == START)
        end = next(i for i, line in enumerate(lines) if line.strip() == END and i > start)
    except StopIteration:
        return [f"{doc_name}: no table between {START} and {END}"], []

    rows: list[Row] = []
    seen: dict[str, int] = {}
    header_seen = False
    for index in range(start + 1, end):
        line = lines[index]
        number = index + 1
        where = f"{doc_name}:{number}"
        if not line.strip().startswith("|"):
            continue
        cells = split_cells(line)
        if not header_seen:
            header_seen = True  # the first row names the columns
            continue
        if all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells):
            continue  # the separator
        if not REQ_ID.match(cells[0].strip("*")):
            problems.append(f"{where}: a row whose first cell is not a requirement id: {cells[0]!r}")
            continue
        if len(cells) != 4:
            problems.append(f"{where}: {len(cells)} cells, expected 4 (id | what it asks | status | evidence)")
            continue
        req, _asks, status, evidence = cells
        req = req.strip("*")
        if req in seen:
            problems.append(f"{where}: {req} is listed twice (first on line {seen[req]})")
        else:
            seen[req] = number
        if status not in STATUSES:
            problems.append(f"{where}: {req}: status {status!r} is not one of {', '.join(STATUSES)}")

        refs: list[tuple[str, str]] = []
        for token in BACKTICKED.findall(evidence):
            match = TEST_REF.match(token)
            if match:
                refs.append((match["path"], match["name"]))
            elif "::" in token:
                problems.append(f"{where}: {req}: `{token}` is not a test reference of the form `path/file.rs::name`")
        rows.append(Row(number, req, status, evidence, refs))

        if status == "met" and not refs:
            problems.append(f"{where}: {req} is met but names no test")
        if status in ("not met", "not applicable") and not re.sub(r"`[^`]*`|<br>|[\s,.;:—-]", "", evidence):
            problems.append(f"{where}: {req} is {status} but gives no reason")
        for path, name in refs:
            ref = f"{path}::{name}"
            target = (code.root / path).resolve()
            if path.startswith("/") or ".." in Path(path).parts or not target.is_relative_to(code.root):
                problems.append(f"{where}: {req}: {ref}: the path must be relative to the repository, inside it")
                continue
            if not target.is_file():
                problems.append(f"{where}: {req}: {ref}: {path} does not exist")
                continue
            tests, defined = code.declared(path)
            if name in tests:
                continue
            if path.endswith(".py"):
                problems.append(f"{where}: {req}: {ref}: {path} defines no `def {name}`")
            elif name in defined:
                problems.append(
                    f"{where}: {req}: {ref}: `fn {name}` in {path} is not a test "
                    "(no #[test]/#[tokio::test], not a case of a test-generating macro)"
                )
            else:
                problems.append(f"{where}: {req}: {ref}: {path} has no test named `{name}`")

    expected = expected_ids()
    missing = [req for req in expected if req not in seen]
    unknown = sorted((req for req in seen if req not in set(expected)), key=id_key)
    if missing:
        problems.append(f"{doc_name}: Level 2 requirements missing from the table: {', '.join(missing)}")
    if unknown:
        problems.append(f"{doc_name}: rows that are not Level 2 requirements of V2, V3, V7, V13: {', '.join(unknown)}")
    return problems, rows


def summary(rows: list[Row]) -> str:
    met = [row for row in rows if row.status == "met"]
    not_met = sum(row.status == "not met" for row in rows)
    na = sum(row.status == "not applicable" for row in rows)
    named = {ref for row in rows for ref in row.refs}
    return (
        f"ASVS: {len(rows)} rows, {len(met)} met ({len(named)} distinct tests named), "
        f"{not_met} not met, {na} n/a"
    )


# --------------------------------------------------------------------- self-test


def mutations(text: str, rows: list[Row], code: Code) -> list[tuple[str, str, str]]:
    """(what, altered table text, a fragment the check must then report)."""
    lines = text.splitlines()
    met = [row for row in rows if row.status == "met" and row.refs]
    if not met:
        return []
    first = met[0]
    path, name = first.refs[0]

    def replace_line(row: Row, new: str) -> str:
        altered = list(lines)
        altered[row.line - 1] = new
        return "\n".join(altered) + "\n"

    def with_ref(row: Row, old: tuple[str, str], new: str) -> str:
        return replace_line(row, lines[row.line - 1].replace(f"`{old[0]}::{old[1]}`", f"`{new}`", 1))

    out = [
        (
            "a renamed test",
            with_ref(first, (path, name), f"{path}::{name}_renamed"),
            f"has no test named `{name}_renamed`",
        ),
        (
            "a test file that does not exist",
            with_ref(first, (path, name), f"{path}.missing.rs::{name}"),
            "does not exist",
        ),
        (
            "a met row without a test",
            replace_line(first, re.sub(r"`[^`]*::[^`]*`", "no test", lines[first.line - 1])),
            f"{first.req} is met but names no test",
        ),
        (
            "an unknown status",
            replace_line(first, lines[first.line - 1].replace("| met |", "| mostly met |", 1)),
            "status 'mostly met' is not one of",
        ),
        (
            "a duplicated requirement",
            "\n".join(lines[: first.line] + [lines[first.line - 1]] + lines[first.line :]) + "\n",
            f"{first.req} is listed twice",
        ),
        (
            "a missing requirement",
            "\n".join(lines[: first.line - 1] + lines[first.line :]) + "\n",
            f"missing from the table: {first.req}",
        ),
    ]
    # A plain helper `fn` in a Rust file the table cites: defined there, but not a test.
    for row in met:
        for ref_path, ref_name in row.refs:
            if not ref_path.endswith(".rs"):
                continue
            tests, defined = code.declared(ref_path)
            helpers = sorted(defined - tests)
            if helpers:
                out.append(
                    (
                        "a helper that is not a test",
                        with_ref(row, (ref_path, ref_name), f"{ref_path}::{helpers[0]}"),
                        f"`fn {helpers[0]}` in {ref_path} is not a test",
                    )
                )
                return out
    return out


def self_test(text: str, code: Code) -> list[str]:
    """Failures of the self-test (empty when every alteration is caught)."""
    problems, rows = check(text, code)
    if problems:
        return ["the unaltered table does not pass, so alterations prove nothing"]
    cases = mutations(text, rows, code)
    failures = []
    if len(cases) < 7:
        failures.append(f"only {len(cases)} of 7 alterations could be made (no met row with a Rust test?)")
    for what, altered, expected in cases:
        found, _ = check(altered, code)
        if not any(expected in problem for problem in found):
            failures.append(f"{what} was not caught (expected a problem containing {expected!r}; got {found})")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true", help="run only the self-test")
    parser.add_argument("--doc", default=str(DOC), help="the Markdown file, relative to the repository (%(default)s)")
    args = parser.parse_args()

    doc_path = ROOT / args.doc
    if not doc_path.is_file():
        print(f"asvs: {args.doc} does not exist", file=sys.stderr)
        return 1
    text = doc_path.read_text(encoding="utf-8")
    code = Code(ROOT)

    status = 0
    if not args.self_test:
        problems, rows = check(text, code, args.doc)
        for problem in problems:
            print(problem, file=sys.stderr)
        verdict = "OK" if not problems else f"FAIL ({len(problems)} problems)"
        print(f"{summary(rows)}: {verdict}")
        status = 1 if problems else 0

    if status == 0:
        failures = self_test(text, code)
        for failure in failures:
            print(f"asvs self-test: {failure}", file=sys.stderr)
        print(f"ASVS self-test: {'OK' if not failures else 'FAIL'} (the check catches renamed, missing and "
              "non-test references, met rows without tests, bad statuses, duplicates and gaps)")
        status = 1 if failures else 0
    return status


if __name__ == "__main__":
    sys.exit(main())
