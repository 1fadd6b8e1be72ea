"""The targeted breaks of `make mutate` (tests/mutation/breaks.py) still apply: each one's
text stands exactly once in its file. A change that rewrites the code a break aims at must
rewrite the break too, or the break silently stops testing anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation.breaks import BREAKS, Break

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("item", BREAKS, ids=[item.name for item in BREAKS])
def test_each_break_finds_its_text_once(item: Break) -> None:
    assert (ROOT / item.path).read_text().count(item.old) == 1, (item.path, item.old)
