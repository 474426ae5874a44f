"""The README and the docs link only to files that exist in the repository."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_point_to_files_in_the_repository(document):
    missing = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = (document.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{document.name} links to files that do not exist: {missing}"
