"""Docker image references: what is pinned, and the version a tag starts with.

(components/policy_facts.py copies everything after this docstring.)

The one parser of image references: the config validates with it, and the
policy pack gets a generated copy (components/policy_facts.py), so both judge
an image the same way. Plain Python, no imports from the program.
"""

from __future__ import annotations

import re

_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9._/:-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_tag(image: str) -> str | None:
    """The tag of an image reference, or None. The tag follows the last ':' and
    holds no '/' or ':', so a registry port (``host:5000/img``) is no tag and
    ``nginx:1:latest`` is tagged latest."""
    found = _REFERENCE.match(image)
    if found:
        return found.group("tag")
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def reference_problem(image: str) -> str | None:
    """Why ``image`` is not a Docker image reference, or None."""
    if _IMAGE_ID.match(image) or _REFERENCE.match(image):
        return None
    return "is not a Docker image reference"


def pin_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it is (a version tag,
    a digest or an image ID)."""
    if _IMAGE_ID.match(image) or _DIGEST.search(image):
        return None
    tag = image_tag(image)
    if not tag:
        return "has no tag, so it resolves to latest"
    if tag == "latest" or tag.endswith("-latest"):
        return f"uses the moving tag {tag!r}"
    return None


def leading_major(image: str) -> int | None:
    """The major version a tag starts with (``postgres:16.6`` is 16), or None."""
    found = re.match(r"^(\d+)", image_tag(image) or "")
    return int(found.group(1)) if found else None
