"""Deploy flows.py:tick on the e2e pool with a one-minute interval schedule under the given name; print its id."""

import sys

from prefect import flow

name = sys.argv[1]
tick = flow.from_source(source="/e2e", entrypoint="flows.py:tick")
print(tick.deploy(name=name, work_pool_name="e2e-pool", interval=60, print_next_steps=False))
