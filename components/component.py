"""The base of every prefect-ha component: its type token comes from its class name."""

from __future__ import annotations

import pulumi

from .config import PROJECT


class StackComponent(pulumi.ComponentResource):
    """A ComponentResource typed ``prefect-ha:index:<ClassName>``; ``TYPE`` names it."""

    TYPE: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.TYPE = f"{PROJECT}:index:{cls.__name__}"

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
