"""The repository itself: docs that speak to users, files that hold on any machine, modules
that each do one job."""

from __future__ import annotations

import ast
import re
import subprocess

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "digit_recognizer"
# Where a user or maintainer reads: none of it may point outside the repository or name how
# the work was organised. (.ci/run may name the data folder beside the checkout.)
CHECKED = ("README.md", "CHANGELOG.md", "docs/", "benchmarks/", "src/", "tests/", "tools/")
TEXT_SUFFIXES = {".md", ".py", ".js", ".html", ".css", ".json", ".toml", ".txt", ""}
FORBIDDEN = {
    "a work-log label": re.compile(r"\bstops?[ -]?\d+\b", re.IGNORECASE),
    "the data folder beside the checkout": re.compile(r"\.\./" + "shared"),
    "an absolute path outside the repository": re.compile(
        r"(?<![\w.])/(?:work|tmp|home|root|mnt|Users)/", re.IGNORECASE
    ),
}


def tracked_files() -> list[str]:
    """Files git tracks, plus new ones it does not ignore: what a clean clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the files a clone holds are unknown")
    return [name for name in listed.stdout.splitlines() if (REPO / name).is_file()]


def checked_files() -> list[str]:
    return [
        name
        for name in tracked_files()
        if name.startswith(CHECKED) and (REPO / name).suffix in TEXT_SUFFIXES
    ]


def test_docs_and_code_name_nothing_outside_the_repository():
    problems = []
    for name in checked_files():
        text = (REPO / name).read_text(encoding="utf-8", errors="replace")
        for what, pattern in FORBIDDEN.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{name}:{line}: {what}: {match.group(0)!r}")
    assert not problems, "\n".join(problems)


def test_the_check_finds_what_it_looks_for():
    """The patterns above must match the things they forbid (else the test cannot fail)."""
    samples = {
        "a work-log label": "as measured at st" + "op 21",
        "the data folder beside the checkout": "reads ../" + "shared/data/mnist",
        "an absolute path outside the repository": "wrote /" + "tmp/s21/bench2",
    }
    for what, sample in samples.items():
        assert FORBIDDEN[what].search(sample), what
    assert not any(p.search("stop=False; runs/robust; docs/results.md") for p in FORBIDDEN.values())


def test_readmes_stay_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
    assert len((REPO / "benchmarks" / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_every_module_is_short_and_says_its_job(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 400, f"{path.name} is over 400 lines: split it"
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring and len(docstring.split()) >= 4, f"{path.name} needs an opening docstring"


def test_every_tool_is_listed_in_the_tools_readme():
    listed = (REPO / "tools" / "README.md").read_text()
    missing = [p.name for p in sorted((REPO / "tools").glob("*.py")) if f"`{p.name}`" not in listed]
    assert not missing, f"add to tools/README.md: {missing}"
