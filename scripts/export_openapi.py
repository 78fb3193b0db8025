"""Write the service's OpenAPI document to openapi.json (the spec the generated client is built from).

python scripts/export_openapi.py           # rewrite openapi.json
python scripts/export_openapi.py --check   # exit 1 if openapi.json is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402

SPEC = REPO / "openapi.json"


def current_spec() -> dict[str, Any]:
    # The routes, not the loaded models, make the spec: no model directory is needed.
    return create_app(Settings(models_dir=REPO / "models", api_keys=[], cors_origins=[])).openapi()


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether openapi.json is up to date")
    args = parser.parse_args()
    text = render(current_spec())
    if args.check:
        stale = not SPEC.is_file() or SPEC.read_text(encoding="utf-8") != text
        print(f"{SPEC.name} is {'stale: run `make openapi`' if stale else 'up to date'}")
        sys.exit(1 if stale else 0)
    SPEC.write_text(text, encoding="utf-8")
    print(f"wrote {SPEC.relative_to(REPO)}")


if __name__ == "__main__":
    main()
