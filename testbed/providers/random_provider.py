"""Test double of pulumi-random: RandomPassword and RandomId, as a real provider plugin.

As pulumi-random (terraform-provider-random's random_password):
- every input change replaces the password, keepers included (RequiresReplace
  on all attributes); the result is generated once and kept in state;
- ``result`` and ``bcryptHash`` are secret outputs; the hash is Go bcrypt's
  ``$2a$`` at the default cost 10;
- the character classes default to on and the minimums to 0; ``overrideSpecial``
  replaces the special-character set.
- RandomId (random_id): every input change, keepers included, draws new bytes;
  ``hex``, ``b64Url``, ``b64Std`` and ``dec`` are views of them, the id is b64Url.
Differs: a password is drawn again until it holds at least one character that
percent-encoding changes, so every test exercises the URL encoding.
"""

from __future__ import annotations

import base64
import secrets
import string
from urllib.parse import quote

import bcrypt

from plugin import Resource, run

DEFAULT_SPECIALS = "!@#$%&*()-_=+[]{}<>:?"


class RandomPassword(Resource):
    token = "random:index/randomPassword:RandomPassword"
    inputs = frozenset({
        "length", "special", "upper", "lower", "numeric", "number", "minUpper", "minLower",
        "minNumeric", "minSpecial", "overrideSpecial", "keepers",
    })
    secret_outputs = frozenset({"result", "bcryptHash"})
    defaults = {"special": True, "upper": True, "lower": True, "numeric": True, "number": True,
                "minUpper": 0, "minLower": 0, "minNumeric": 0, "minSpecial": 0}

    def check(self, news):
        checked = super().check(news)
        if "length" not in checked or int(checked["length"]) < 1:
            raise ValueError("length must be at least 1")
        return checked

    def create(self, news, preview, timeout):
        classes = []
        if news["upper"]:
            classes.append((string.ascii_uppercase, int(news["minUpper"])))
        if news["lower"]:
            classes.append((string.ascii_lowercase, int(news["minLower"])))
        if news["numeric"] and news["number"]:
            classes.append((string.digits, int(news["minNumeric"])))
        if news["special"]:
            classes.append((news.get("overrideSpecial") or DEFAULT_SPECIALS, int(news["minSpecial"])))
        alphabet = "".join(chars for chars, _ in classes)
        length = int(news["length"])
        while True:
            candidate = "".join(secrets.choice(alphabet) for _ in range(length))
            if all(sum(c in chars for c in candidate) >= minimum for chars, minimum in classes) and \
                    quote(candidate, safe="") != candidate:
                break
        hashed = bcrypt.hashpw(candidate.encode(), bcrypt.gensalt(rounds=10, prefix=b"2a")).decode()
        return "none", {**news, "result": candidate, "bcryptHash": hashed}


class RandomId(Resource):
    token = "random:index/randomId:RandomId"
    inputs = frozenset({"byteLength", "keepers", "prefix"})

    def check(self, news):
        checked = super().check(news)
        if "byteLength" not in checked or int(checked["byteLength"]) < 1:
            raise ValueError("byteLength must be at least 1")
        return checked

    def create(self, news, preview, timeout):
        raw = secrets.token_bytes(int(news["byteLength"]))
        prefix = news.get("prefix") or ""
        b64_url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return prefix + b64_url, {
            **news,
            "hex": prefix + raw.hex(),
            "b64Url": prefix + b64_url,
            "b64Std": prefix + base64.b64encode(raw).decode(),
            "dec": prefix + str(int.from_bytes(raw, "big")),
        }


RESOURCES = [RandomPassword(), RandomId()]

if __name__ == "__main__":
    run("random", __import__("os").environ.get("PREFECT_HA_PLUGIN_VERSION", "4.21.4"), RESOURCES)
