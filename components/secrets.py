"""Generated credentials, kept secret in state and in every value built from them."""

from __future__ import annotations

import pulumi
import pulumi_random as random
from .component import StackComponent

# Characters a URL, a shell and a config file would each trip over; the URL
# builders percent-encode them, and the tests prove they survive the trip.
PASSWORD_SPECIALS = "@:/?#%&+ !$*-_.~="
PASSWORD_LENGTH = 32


def _password(name: str, specials: str, opts: pulumi.ResourceOptions, rotation: int = 0) -> random.RandomPassword:
    # A new rotation count is a new password. No keepers at 0, so stacks made
    # before rotation existed keep the passwords they have.
    keepers = {"rotation": str(rotation)} if rotation else None
    return random.RandomPassword(
        name, length=PASSWORD_LENGTH, special=True, override_special=specials, min_special=2, keepers=keepers,
        opts=opts,
    )


class StackSecrets(StackComponent):
    """Passwords for the Postgres role and for Redis, and the API credentials when auth is on."""

    postgres_password: pulumi.Output[str]
    postgres_init_password: pulumi.Output[str]
    """What Postgres initialises an empty volume with; the credentials job replaces it."""
    redis_password: pulumi.Output[str]
    auth_string: pulumi.Output[str] | None
    """``user:password`` as Prefect clients send it in their auth-string setting."""
    htpasswd: pulumi.Output[str] | None
    """nginx's auth_basic_user_file line: the user and the password's bcrypt hash."""

    def __init__(self, name: str, *, auth_username: str | None = None, rotation: int = 0,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(name, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.postgres = _password(f"{name}-postgres", PASSWORD_SPECIALS, child, rotation)
        # Postgres reads its superuser's password only when it initialises an empty
        # volume; the credentials job sets the current one right after. Never
        # rotated, so a rotation does not restart Postgres.
        self.postgres_init = _password(f"{name}-postgres-init", PASSWORD_SPECIALS, child)
        # redis.conf has no quoting rules for requirepass beyond whitespace and
        # quotes, so its password sticks to characters that need none.
        self.redis = _password(f"{name}-redis", "@:/?#%&+!$*-_.~=", child, rotation)
        self.postgres_password = pulumi.Output.secret(self.postgres.result)
        self.postgres_init_password = pulumi.Output.secret(self.postgres_init.result)
        self.redis_password = pulumi.Output.secret(self.redis.result)
        self.auth_string = self.htpasswd = None
        if auth_username is not None:
            # The bcrypt hash is computed once and kept in state, so nginx's
            # htpasswd (and its container) does not change on every `pulumi up`.
            # A user types it into the UI's login form: no characters that confuse.
            self.auth = _password(f"{name}-auth", "-_.~!*+=", child)
            self.auth_string = pulumi.Output.secret(self.auth.result.apply(lambda pw: f"{auth_username}:{pw}"))
            self.htpasswd = pulumi.Output.secret(self.auth.bcrypt_hash.apply(lambda h: f"{auth_username}:{h}\n"))
        self.register_outputs(
            {"postgres_password": self.postgres_password, "redis_password": self.redis_password,
             "auth_string": self.auth_string}
        )
