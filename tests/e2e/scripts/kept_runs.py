"""Flow runs that must survive a redeploy: `make N` creates N (alternately COMPLETED and
FAILED), `list` prints every run as sorted [id, name, state] JSON on one line."""

import json
import sys

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Completed, Failed


@flow(name="kept-volume")
def kept() -> None:
    pass


with get_client(sync_client=True) as client:
    if sys.argv[1] == "make":
        for i in range(int(sys.argv[2])):
            client.create_flow_run(kept, name=f"kept-{i}", state=Completed() if i % 2 else Failed())
    runs = client.read_flow_runs(limit=200)
    print(json.dumps(sorted([str(r.id), r.name, r.state.type.value] for r in runs)))
