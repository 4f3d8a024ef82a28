"""The code cites only documents in the repository: docs/ anchors that exist, no external spec, no issue numbers."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the packages, the examples and the benchmarks (tests may quote what they check against)
FOLDERS = ("control", "mftt", "agents", "app", "examples", "benchmarks")
CODE = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))

# "spec §A.1", "spec A.1 remark 3", "(spec: architecture.md)", "issue 8", "issue #8"
EXTERNAL = re.compile(
    r"\bspec\s*(?:§|[A-C]\.\d|:\s*[\w-]+\.md)|§\s*[A-C]\.\d|\bissues?\s+#?\d+", re.IGNORECASE
)
CITATION = re.compile(r"docs/([\w./-]+\.md)#([\w-]+)")
ANCHOR = re.compile(r"\{#([\w-]+)\}")


def _anchors(doc: Path) -> set[str]:
    return set(ANCHOR.findall(doc.read_text(encoding="utf-8")))


def test_code_files_found():
    assert len(CODE) > 50, CODE


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_outside_the_repository(path):
    bad = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if EXTERNAL.search(line)
    ]
    assert not bad, (
        "cite docs/theory.md#<anchor> instead of an external spec or issue:\n" + "\n".join(bad)
    )


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_anchors_exist(path):
    bad = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for doc, anchor in CITATION.findall(line):
            target = ROOT / "docs" / doc
            if not target.is_file():
                bad.append(f"{path.relative_to(ROOT)}:{n}: docs/{doc} does not exist")
            elif anchor not in _anchors(target):
                bad.append(f"{path.relative_to(ROOT)}:{n}: docs/{doc} has no section {{#{anchor}}}")
    assert not bad, "\n".join(bad)


def test_docs_anchors_are_unique():
    for doc in (ROOT / "docs").glob("*.md"):
        names = ANCHOR.findall(doc.read_text(encoding="utf-8"))
        assert len(names) == len(set(names)), (
            doc.name,
            sorted(n for n in names if names.count(n) > 1),
        )


def test_the_checks_catch_what_they_should():
    assert EXTERNAL.search("(spec §C.1)") and EXTERNAL.search("spec A.1 remark 3")
    assert EXTERNAL.search("(issue 8)") and EXTERNAL.search("(spec: architecture.md)")
    assert not EXTERNAL.search("isoformat(timespec='seconds')") and not EXTERNAL.search(
        "def sub(key, spec: type)"
    )
    assert CITATION.findall("see docs/theory.md#lq-game.") == [("theory.md", "lq-game")]
