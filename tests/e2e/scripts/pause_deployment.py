"""Pause a deployment's schedule (by id), so its runs stop loading the one worker."""

import sys
from uuid import UUID

from prefect.client.orchestration import get_client

with get_client(sync_client=True) as client:
    client.pause_deployment(UUID(sys.argv[1]))
    print("paused", sys.argv[1])
