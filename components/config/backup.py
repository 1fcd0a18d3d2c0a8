"""Settings of the scheduled logical backups of the Prefect database."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from .base import Group, cpu_limit, memory_limit
from .types import Cpus, MemorySize, checked

# At most a week between backups; at most 1,000 kept.
MAX_INTERVAL_MINUTES = 7 * 24 * 60
MAX_KEEP = 1000
# A bind mount's source: absolute, and nothing Docker's `src:dst:mode` spelling
# or a shell line could misread (the path appears in the README's commands).
_HOST_PATH_RE = re.compile(r"/(?:[A-Za-z0-9._+@-]+/?)*")


def _host_path(value: str) -> bool:
    return value == "" or (_HOST_PATH_RE.fullmatch(value) is not None and "/../" not in f"{value}/" and value != "/")


class BackupConfig(Group):
    enabled: bool = Field(
        False,
        description="Take scheduled logical backups of the Prefect database (pg_dump custom format, each verified with pg_restore).",
    )
    interval_minutes: Annotated[
        int, checked(lambda v: 1 <= v <= MAX_INTERVAL_MINUTES, f"must be 1-{MAX_INTERVAL_MINUTES} minutes, got {{}}")
    ] = Field(1440, description="Minutes between two backups; the first is taken when the backup container starts.")
    keep: Annotated[int, checked(lambda v: 1 <= v <= MAX_KEEP, f"must be 1-{MAX_KEEP} backups, got {{}}")] = Field(
        7, description="Newest backups kept; older ones are deleted after each successful backup."
    )
    host_path: Annotated[
        str,
        checked(_host_path, "must be empty (the named volume <prefix>-backups) or an absolute host directory "
                            "of letters, digits and . _ + @ - (not /), got {!r}"),
    ] = Field(
        "",
        description="Host directory the backups go to (bind mount, writable by root); empty uses the volume <prefix>-backups, kept on destroy.",
    )
    memory_limit: MemorySize = memory_limit("512m", "the backup container")
    cpu_limit: Cpus = cpu_limit("", "the backup container")

    @property
    def interval_seconds(self) -> int:
        return self.interval_minutes * 60
