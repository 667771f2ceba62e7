"""Stage bookkeeping for resumable pipelines: a stage is done when its record says so.

A stage (train, sample, evaluate, ...) has a *key*: the SHA-256 of everything it depends on
(dataset fingerprint, resolved config, the output hashes of the stages upstream). When it
finishes, its output files are already in place (each written atomically) and a record
``<folder>/.stages/<name>.json`` is written last, atomically, with the key and the SHA-256 of
every output. On the next run the stage is skipped only if the record exists, its key equals
the key computed now, and every output still has the recorded hash. So a kill at any moment
leaves either a complete record or none, a changed input reruns exactly the stages whose key
it enters, and a damaged or edited output is noticed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genbench.io.atomic import atomic_write_json
from genbench.io.hashing import file_sha256

STAGE_DIR = ".stages"


def canonical_json(obj: Any) -> str:
    """Stable text for hashing: sorted keys, no whitespace, non-JSON values via ``str``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(**inputs: Any) -> str:
    """SHA-256 of the canonical JSON of ``inputs``: the identity of a stage's inputs."""
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


@dataclass
class StageRecord:
    name: str
    key: str
    outputs: dict[str, str]  # path relative to the stage folder -> sha256
    completed_at: str
    elapsed_s: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def output_hash(self) -> str:
        """One hash over all outputs, for the keys of downstream stages."""
        return content_key(outputs=self.outputs)


class StageStore:
    """The records of the stages whose outputs live under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, name: str) -> Path:
        return self.folder / STAGE_DIR / f"{name}.json"

    def read(self, name: str) -> StageRecord | None:
        try:
            obj = json.loads(self._path(name).read_text(encoding="utf-8"))
            return StageRecord(**obj)
        except (FileNotFoundError, json.JSONDecodeError, TypeError, UnicodeDecodeError):
            return None

    def done(self, name: str, key: str, *, verify: bool = True) -> StageRecord | None:
        """The record if stage ``name`` finished with inputs ``key`` and its outputs are intact."""
        rec = self.read(name)
        if rec is None or rec.key != key:
            return None
        for rel, digest in rec.outputs.items():
            p = self.folder / rel
            if not p.is_file():
                return None
            if verify and file_sha256(p) != digest:
                return None
        return rec

    def complete(
        self,
        name: str,
        key: str,
        outputs: list[Path],
        *,
        started: float,
        info: dict[str, Any] | None = None,
    ) -> StageRecord:
        """Record stage ``name`` as finished; call only after every output is written."""
        rels = {}
        for p in outputs:
            p = Path(p)
            rels[str(p.relative_to(self.folder))] = file_sha256(p)
        rec = StageRecord(
            name=name,
            key=key,
            outputs=dict(sorted(rels.items())),
            completed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            elapsed_s=round(time.time() - started, 3),
            info=info or {},
        )
        atomic_write_json(self._path(name), asdict(rec))
        return rec

    def invalidate(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
