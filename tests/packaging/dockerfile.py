"""A small reader of the repo's Dockerfile: stages and their instructions, enough for tests to check what the
image will contain without a Docker engine."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, COPY, RUN, ...
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, or None for the shell form."""
        text = self.args.removeprefix("CMD").strip() if self.keyword != "HEALTHCHECK" else self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index(" CMD ") + 5 :].strip() if " CMD " in f" {text}" else ""
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def copies(self) -> list[tuple[list[str], str, dict[str, str]]]:
        """(sources, destination, flags) of each COPY."""
        result = []
        for copy in self.all("COPY"):
            words = shlex.split(copy.args)
            flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            result.append((paths[:-1], paths[-1], flags))
        return result


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    return lines


def parse(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """(build ARGs declared before the first FROM with their defaults, stages in order)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), flags=re.IGNORECASE)
            assert match, f"unreadable FROM: {line}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), match[1])
            stages.append(Stage(base=base, name=match[2]))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, rest.strip()))
    return args, stages


def installed_requirements(stages: list[Stage]) -> Path:
    """The repo file that the image's `pip install --requirement <file>` installs (traced through its COPY)."""
    for stage in stages:
        for run in stage.all("RUN"):
            match = re.search(r"pip .*install .*--requirement[ =](\S+)", run.args)
            if match is None:
                continue
            target = match[1]
            for sources, dest, flags in stage.copies():
                if dest == target and "from" not in flags:
                    [source] = sources
                    return REPO / source
            raise AssertionError(f"{target} is installed but never copied into stage {stage.name}")
    raise AssertionError("the Dockerfile installs no requirements file")
