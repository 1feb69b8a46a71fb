"""The lake: one Parquet file per contract table, every identifier already a pseudonym.

`PORTRAIT_HOME/lake` is a symbolic link to one immutable version under `lake.d/`. An ingest
builds the next version beside it (hard-linking the tables it does not change) and commits by
swapping the link with one `rename`, which POSIX makes atomic: a reader, or an ingest killed at
any point, sees the old lake or the new one, never a mixture. Versions other than the current
one are removed at the next commit.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

QUARANTINE = "quarantine"  # sub-folder of a version: the rows its ingest refused


def read_lake(lake_dir: Path, table: str, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(lake_dir) / f"{table}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"lake has no table {table!r} ({path}); run `portrait ingest` first")
    return pd.read_parquet(path, columns=columns)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary file beside the target, then rename: readers see old or new, never half."""
    tmp = path.with_suffix(".parquet.tmp")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Microsecond timestamps: DuckDB (Feast's offline store) cannot read tz-aware nanoseconds.
    pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=True)
    os.replace(tmp, path)


class LakeVersion:
    """A new version being built; nothing is visible until `commit`."""

    def __init__(self, lake_dir: Path):
        self.lake_dir = Path(lake_dir)
        self.versions_dir = self.lake_dir.with_name(self.lake_dir.name + ".d")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        # One writer at a time; the lock dies with its process, so a killed ingest never blocks.
        self._lock = open(self.versions_dir / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"another ingest is writing {self.lake_dir}; wait for it to finish") from None
        _adopt_plain_folder(self.lake_dir, self.versions_dir)
        self.current = self.lake_dir.resolve() if self.lake_dir.is_symlink() else None
        self.path = self.versions_dir / f"v-{uuid.uuid4().hex[:12]}.building"
        (self.path / QUARANTINE).mkdir(parents=True)

    def table_path(self, table: str) -> Path:
        return self.path / f"{table}.parquet"

    def current_table(self, table: str) -> Path | None:
        if self.current is None:
            return None
        path = self.current / f"{table}.parquet"
        return path if path.exists() else None

    def keep(self, table: str) -> None:
        """Carry a table over unchanged (a hard link: no copy, byte-identical)."""
        source = self.current_table(table)
        if source is not None:
            os.link(source, self.table_path(table))

    def commit(self) -> Path:
        for table in self.current.glob("*.parquet") if self.current else []:
            if not self.table_path(table.stem).exists():
                self.keep(table.stem)  # tables this ingest did not touch stay as they were
        final = self.path.with_suffix("")
        os.replace(self.path, final)
        link = self.lake_dir.with_name(f".{self.lake_dir.name}.{uuid.uuid4().hex[:8]}")
        os.symlink(os.path.relpath(final, self.lake_dir.parent), link)
        os.replace(link, self.lake_dir)  # the commit point
        self._remove_all_but(final)  # older versions, and any left by an ingest that was killed
        self._lock.close()
        return final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()

    def _remove_all_but(self, keep: Path) -> None:
        for version in self.versions_dir.iterdir():
            if version.is_dir() and version != keep:
                shutil.rmtree(version, ignore_errors=True)


def _adopt_plain_folder(lake_dir: Path, versions_dir: Path) -> None:
    """A lake written before versioning (a plain folder) becomes the first version."""
    if lake_dir.is_dir() and not lake_dir.is_symlink():
        adopted = versions_dir / f"v-{uuid.uuid4().hex[:12]}"
        os.replace(lake_dir, adopted)
        os.symlink(os.path.relpath(adopted, lake_dir.parent), lake_dir)
