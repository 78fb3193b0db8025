"""The README's configuration table lists every setting, and nothing that is not one."""

from __future__ import annotations

import re

from service.config import Settings

from .dockerfile import REPO


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(CELLSTATE_[A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    fields = {f"CELLSTATE_{name.upper()}" for name in Settings.model_fields}
    assert fields - rows == set(), "settings missing from the README's Configuration table"
    assert rows - fields == set(), "README documents settings that do not exist"
