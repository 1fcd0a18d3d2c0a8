"""Generated credentials, kept secret in state and in every value built from them."""

from __future__ import annotations

import pulumi
import pulumi_random as random

# Characters a URL, a shell and a config file would each trip over; the URL
# builders percent-encode them, and the tests prove they survive the trip.
PASSWORD_SPECIALS = "@:/?#%&+ !$*-_.~="
PASSWORD_LENGTH = 32


class StackSecrets(pulumi.ComponentResource):
    """Passwords for the Postgres role and for Redis."""

    postgres_password: pulumi.Output[str]
    redis_password: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("prefect-ha:index:StackSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.postgres = random.RandomPassword(
            f"{name}-postgres",
            length=PASSWORD_LENGTH,
            special=True,
            override_special=PASSWORD_SPECIALS,
            min_special=2,
            opts=child,
        )
        # redis.conf has no quoting rules for requirepass beyond whitespace and
        # quotes, so its password sticks to characters that need none.
        self.redis = random.RandomPassword(
            f"{name}-redis",
            length=PASSWORD_LENGTH,
            special=True,
            override_special="@:/?#%&+!$*-_.~=",
            min_special=2,
            opts=child,
        )
        self.postgres_password = pulumi.Output.secret(self.postgres.result)
        self.redis_password = pulumi.Output.secret(self.redis.result)
        self.register_outputs(
            {"postgres_password": self.postgres_password, "redis_password": self.redis_password}
        )
