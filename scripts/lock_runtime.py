"""Write requirements/runtime.txt: the service's runtime dependencies from pyproject.toml, with every transitive
dependency pinned, as resolved in a fresh virtual environment. The Docker image installs exactly this file.

    python scripts/lock_runtime.py            # rewrite the lock
    python scripts/lock_runtime.py --check    # exit 1 if pyproject's runtime pins and the lock disagree
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "runtime.txt"
HEADER = (
    "# The service's runtime dependencies (pyproject.toml [project].dependencies) and everything they pull in,\n"
    "# resolved in a fresh venv. The Docker image installs exactly this file. Regenerate: make lock\n"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: list[str]) -> dict[str, str]:
    """`name==version` lines (comments and blanks ignored) -> {canonical name: version}."""
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if match is None:
            raise ValueError(f"not an exact pin: {raw!r}")
        pins[canonical(match[1])] = match[2]
    return pins


def runtime_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return parse_pins(project["dependencies"])


def lock_pins() -> dict[str, str]:
    return parse_pins(LOCK.read_text(encoding="utf-8").splitlines())


def disagreements() -> list[str]:
    """Each runtime dependency of pyproject.toml must be in the lock with the same version."""
    locked = lock_pins()
    return [
        f"{name}=={version} in pyproject.toml, {name}=={locked.get(name, '(missing)')} in {LOCK.name}"
        for name, version in runtime_pins().items()
        if locked.get(name) != version
    ]


def resolve() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        python = str(Path(tmp) / "bin" / "python")
        requirements = [f"{name}=={version}" for name, version in runtime_pins().items()]
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements], check=True
        )
        frozen = subprocess.run([python, "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
    return sorted((line for line in frozen.splitlines() if line.strip()), key=str.lower)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare pyproject.toml with the lock")
    args = parser.parse_args()
    if args.check:
        problems = disagreements()
        print("\n".join(problems) or f"{LOCK.relative_to(REPO)} agrees with pyproject.toml")
        sys.exit(1 if problems else 0)
    LOCK.parent.mkdir(exist_ok=True)
    LOCK.write_text(HEADER + "\n".join(resolve()) + "\n", encoding="utf-8")
    print(f"wrote {LOCK.relative_to(REPO)}")


if __name__ == "__main__":
    main()
