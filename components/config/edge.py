"""Settings of the edge: nginx, its TLS certificate, and who checks credentials."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from .base import Group, cpu_limit, memory_limit
from .types import Cpus, HostPort, MemorySize, NginxSize, PinnedImage, Port, checked, matching, one_of

# Where Prefect serves its API, under any base URL.
API_PATH = "/api"
API_HEALTH_PATH = f"{API_PATH}/health"
TLS_MODES = (TLS_OFF, TLS_GENERATED, TLS_PROVIDED) = ("off", "generated", "provided")
AUTH_MODES = (AUTH_NONE, AUTH_PREFECT, AUTH_NGINX) = ("none", "prefect", "nginx")
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----[A-Za-z0-9+/=\s]+-----END \1-----")


class ProxyConfig(Group):
    image: PinnedImage = Field("nginx:1.27.3", description="nginx image in front of the API replicas; pinned tag.")
    port: Port = Field(4200, description="Host port nginx publishes.")
    public_url: str = Field(
        "http://localhost:4200",
        description="URL users and browsers reach nginx at; the UI is told to call <publicUrl>/api.",
    )
    client_max_body_size: NginxSize = Field("10m", description="Largest request body nginx accepts (events are up to 1.5 MB).")
    allow_cidrs: tuple[str, ...] = Field(
        (),
        description="Client networks (CIDRs) nginx serves; everyone else gets 403. Empty means open to all.",
    )
    rate_limit: Annotated[int, checked(lambda v: v >= 0, "must be >= 0 requests per second (0 turns limiting off), got {}")] = Field(
        0, description="Requests per second per client address to /api (nginx limit_req); 0 turns limiting off."
    )
    rate_limit_burst: int = Field(
        20, ge=0, description="Requests per client address allowed above the rate at once; beyond that nginx answers 429."
    )
    memory_limit: MemorySize = memory_limit("256m", "nginx")
    cpu_limit: Cpus = cpu_limit("", "nginx")

    @field_validator("allow_cidrs", mode="before")
    @classmethod
    def _cidr_list(cls, value: Any) -> Any:
        # The CLI hands arrays over as JSON text.
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return ()
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        networks = []
        for item in value:
            try:
                networks.append(str(ipaddress.ip_network(item, strict=True)))
            except ValueError as err:
                raise ValueError(f"must be a list of CIDRs such as 10.0.0.0/8, got {item!r} ({err})") from None
        return tuple(networks)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL such as http://prefect.example.com, got {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"must not carry credentials, a query or a fragment, got {value!r}")
        if re.search(r"[\s\"'$;{}\\<>`]", value):
            raise ValueError(f"must not contain spaces, quotes or any of $ ; {{ }} \\ < > `, got {value!r}")
        if parts.hostname in ("0.0.0.0", "::"):
            raise ValueError(f"must be an address browsers can reach, not a wildcard bind address, got {value!r}")
        return value.rstrip("/")

    @property
    def scheme(self) -> str:
        return urlsplit(self.public_url).scheme

    @property
    def api_url(self) -> str:
        """What browsers and clients call: the UI is told this URL."""
        return f"{self.public_url}{API_PATH}"

    @property
    def ui_url(self) -> str:
        return f"{self.public_url}/"

    @property
    def health_url(self) -> str:
        return f"{self.public_url}{API_HEALTH_PATH}"


class TlsConfig(Group):
    enabled: bool = Field(
        False,
        description="Serve HTTPS at nginx; proxy.publicUrl must then be https. Plain HTTP redirects to it.",
    )
    certificate: str = Field(
        "",
        description="PEM certificate chain for nginx (set with --secret along with tls.key); empty generates a self-signed CA and certificate.",
    )
    key: SecretStr = Field(
        SecretStr(""),
        description="PEM private key of tls.certificate; set it with `pulumi config set --secret --path tls.key`.",
    )
    http_port: HostPort = Field(0, description="Host port for plain HTTP that redirects to HTTPS; 0 publishes none.")

    @field_validator("certificate")
    @classmethod
    def _certificate(cls, value: str) -> str:
        if value and not _PEM_RE.search(value):
            raise ValueError("must be a PEM certificate (-----BEGIN CERTIFICATE----- ...)")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        # Never echo the value: it is a private key.
        if value.get_secret_value() and not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", value.get_secret_value()):
            raise ValueError("must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)")
        return value

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        has_cert, has_key = bool(self.certificate), bool(self.key.get_secret_value())
        if has_cert != has_key:
            raise ValueError("tls.certificate and tls.key must be given together (or neither, for a generated certificate)")
        if has_cert and not self.enabled:
            raise ValueError("tls.certificate is set but tls.enabled is false; turn TLS on or drop the certificate")
        return self

    @property
    def provided(self) -> bool:
        return bool(self.certificate)

    @property
    def mode(self) -> str:
        """One of TLS_MODES: what nginx serves, as its container declares in a label."""
        if not self.enabled:
            return TLS_OFF
        return TLS_PROVIDED if self.provided else TLS_GENERATED


class AuthConfig(Group):
    mode: Annotated[Literal[AUTH_MODES], one_of(AUTH_MODES, lambda v: v.strip().lower())] = Field(  # type: ignore[valid-type]
        "none",
        description="Who checks credentials: none, prefect (the Prefect server's own basic auth) or nginx (basic auth at the proxy); never both.",
    )
    username: Annotated[
        str, matching(r"[A-Za-z0-9_.-]{1,64}", "must be 1-64 letters, digits, '.', '_' or '-' (no ':'), got {!r}")
    ] = Field("prefect", description="User name of the generated credentials.")

    @field_validator("mode", mode="before")
    @classmethod
    def _not_both(cls, value: Any) -> Any:
        # Runs before the type's own check, which would only say "one of".
        words = {w for w in re.split(r"[,+ ]+", value.strip().lower()) if w} if isinstance(value, str) else set()
        if {AUTH_PREFECT, AUTH_NGINX} <= words:
            raise ValueError(
                f"must be one of {', '.join(AUTH_MODES)}, got {value!r}: prefect and nginx auth cannot "
                "be combined, both use the Authorization header"
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.mode != AUTH_NONE

    @property
    def checked_by_nginx(self) -> bool:
        """nginx's basic auth guards the edge; Prefect itself checks nothing."""
        return self.mode == AUTH_NGINX

    @property
    def checked_by_prefect(self) -> bool:
        """The Prefect server checks its own auth string."""
        return self.mode == AUTH_PREFECT
