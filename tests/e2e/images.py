"""Names of the test images testbed/build_images.sh builds on the prefect stand-in.

One place for the tests and the testbed to agree: the tags follow the pins in
testbed/images/prefect/ (and testbed/images/prefect-next/ for the version the
upgrade tests move to) the way build_images.sh derives them, and the flow
entrypoint is where testbed/images/flows/Dockerfile puts the flow file.
(The stand-ins for the official images are in testbed.IMAGES.)
"""

from __future__ import annotations

import re
from pathlib import Path

_IMAGES_DIR = Path(__file__).resolve().parents[2] / "testbed" / "images"


def _pin(file: str, package: str, image: str = "prefect") -> str:
    """The version `package==X` is pinned to in testbed/images/<image>/<file>."""
    text = (_IMAGES_DIR / image / file).read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(package)}==([^\s;#]+)", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no '{package}==X' pin in testbed/images/{image}/{file}")
    return match.group(1)


PREFECT_VERSION = _pin("requirements.txt", "prefect")
# The second prefect stand-in (testbed/images/prefect-next): the same image with a newer prefect,
# whose database migrations go past PREFECT_VERSION's; an upgrade test moves prefect.image to it.
NEXT_PREFECT_VERSION = _pin("requirements.txt", "prefect", image="prefect-next")
NEXT_PREFECT_IMAGE = f"prefect-ha-test/prefect:{NEXT_PREFECT_VERSION}"
# In the prefect stand-in's /wheels but not installed: what EXTRA_PIP_PACKAGES can name offline.
PREFECT_DOCKER_VERSION = _pin("extra-requirements.txt", "prefect-docker")
PREFECT_DOCKER_REQUIREMENT = f"prefect-docker=={PREFECT_DOCKER_VERSION}"

# The prefect stand-in with prefect-docker installed (testbed/images/prefect-worker).
WORKER_IMAGE = f"prefect-ha-test/prefect-worker:{PREFECT_VERSION}"
# The prefect stand-in with the flow file baked in (testbed/images/flows).
FLOWS_IMAGE = "prefect-ha-test/flows:1"
# Flow `hello(n: int = 0)`: logs "hello from flow run number {n}" and returns that line.
FLOW_ENTRYPOINT = "/opt/prefect/flows.py:hello"

TEST_IMAGES = (WORKER_IMAGE, FLOWS_IMAGE, NEXT_PREFECT_IMAGE)
