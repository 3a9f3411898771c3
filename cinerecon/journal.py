"""Completion records of a shard job, and the digests that chain stages together.

A shard job appends one line per finished subject to `{shard}.journal` beside its manifest
(written and flushed as soon as the subject's files are in place). When the job runs again
(a retry after a kill, a time limit or an out-of-memory error; or a rerun because another
subject of the shard changed), a subject is not recomputed when its journal line has the
same key (its inputs, the stage's settings and the code) and its files are still as
written (same size and modification time); otherwise its files are removed and it runs.

Digests:
- inputs digest of a subject at a stage: the stage, its settings, the subject's rows in
  every upstream manifest and the content of every other declared input (checkpoints).
  Deterministic: no paths of the results root, no times.
- manifest digest: the inputs digest and the content of the subject's output files. A
  stage that reads files of a stage two steps up is therefore still covered: any change
  upstream changes every manifest row downstream of it.
- journal key: the inputs digest, the cinerecon code and the size/mtime of the subject's
  raw files (ingest); it decides reuse only and is never written into a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from cinerecon.io.files import atomic_path


def sha1(*parts: str) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def canonical(obj) -> str:
    """JSON with sorted keys; objects that are not plain data (models, devices) by type name:
    they come from declared inputs (checkpoints), which are digested by content."""
    return json.dumps(obj, sort_keys=True, default=lambda o: f"<{type(o).__name__}>")


@lru_cache(maxsize=None)
def _content_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_digest(path) -> str:
    """sha1 of a file's bytes (cached per size and mtime within a process)."""
    st = os.stat(path)
    return _content_digest(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Digest of the cinerecon package's sources: changed code recomputes what it made."""
    root = Path(__file__).parent
    return sha1(*(f"{p.relative_to(root)}:{content_digest(p)}" for p in sorted(root.rglob("*.py"))))


class Journal:
    """The append-only completion records of one shard job: {subject: last entry}."""

    def __init__(self, manifest_path):
        manifest_path = Path(manifest_path)
        self.path = manifest_path.with_name(manifest_path.stem + ".journal")

    def load(self) -> dict[str, dict]:
        entries = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return entries
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a kill
                continue
            if isinstance(entry, dict) and isinstance(entry.get("subject"), str):
                entries[entry["subject"]] = entry
        return entries

    def record(self, entry: dict) -> None:
        """Append one entry, on disk before the next subject starts."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, entries: list[dict]) -> None:
        """Keep only the given entries (the shard's current subjects, once it has finished)."""
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
