"""Print a work pool as the API returns it (JSON): type, concurrency limit, job variable defaults."""

import json
import sys

from prefect.client.orchestration import get_client

with get_client(sync_client=True) as client:
    pool = client.read_work_pool(sys.argv[1])
    props = pool.base_job_template["variables"]["properties"]
    print(json.dumps({
        "type": pool.type,
        "concurrency_limit": pool.concurrency_limit,
        "defaults": {key: spec.get("default") for key, spec in props.items()},
        "workers": [w.name for w in client.read_workers_for_work_pool(pool.name)],
    }))
