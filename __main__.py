"""prefect-ha: a highly available Prefect 3 server on Docker.

Reads the stack's config once, builds the stack, exports what users need.
"""

import pulumi

from components.stack import PrefectHa, read_stack_config

stack = pulumi.get_stack()
config = read_stack_config()
prefect = PrefectHa("prefect", config=config, stack=stack)

for key, value in prefect.outputs.items():
    pulumi.export(key, value)
