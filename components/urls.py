"""Connection URLs with their credentials percent-encoded.

``quote(value, safe="")`` encodes every reserved character, so a password such
as ``p@ss:/?#`` cannot end the userinfo early; ``quote_plus`` would turn a space
into ``+``, which URL parsers (SQLAlchemy, redis-py) read back as a plus.
"""

from urllib.parse import quote


def _userinfo(user: str, password: str) -> str:
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


def postgres_url(user: str, password: str, host: str, port: int, database: str) -> str:
    """SQLAlchemy URL for Prefect's asyncpg driver."""
    return f"postgresql+asyncpg://{_userinfo(user, password)}@{host}:{port}/{quote(database, safe='')}"


def redis_url(password: str, host: str, port: int, db: int) -> str:
    """redis:// URL authenticating as the default user."""
    return f"redis://:{quote(password, safe='')}@{host}:{port}/{db}"
