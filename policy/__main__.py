"""prefect-ha's policy pack: `pulumi preview --policy-pack policy` (see README.md).

The policies live in prefect_ha_policies.py, where the tests import them;
constructing the PolicyPack serves them to the Pulumi engine and never returns.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from prefect_ha_policies import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
