"""The certificate nginx serves: the user's own, or one signed by a CA the stack generates."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pulumi
import pulumi_tls as tls

from .config import PROJECT, TlsConfig
from .component import StackComponent

# Go's hours; a year for the server certificate and five for the CA clients
# trust. Within the early-renewal window the provider plans a replacement on
# the next `pulumi up`; outside it previews show no change.
SERVER_VALIDITY_HOURS = 365 * 24
SERVER_EARLY_RENEWAL_HOURS = 30 * 24
CA_VALIDITY_HOURS = 5 * 365 * 24
# A CA renewed a year ahead never expires under a server certificate it signed.
CA_EARLY_RENEWAL_HOURS = 365 * 24
# Names local health checks use, besides the public host.
LOCAL_DNS_NAMES = ("localhost",)
LOCAL_IP_ADDRESSES = ("127.0.0.1",)


def subject_alt_names(public_url: str) -> tuple[list[str], list[str]]:
    """(dns_names, ip_addresses) a certificate for ``public_url`` must carry."""
    host = urlsplit(public_url).hostname or ""
    try:
        public_ip = [str(ipaddress.ip_address(host))]
        public_dns: list[str] = []
    except ValueError:
        public_ip, public_dns = [], [host.lower()]
    dns_names = list(dict.fromkeys([*public_dns, *LOCAL_DNS_NAMES]))
    ip_addresses = list(dict.fromkeys([*public_ip, *LOCAL_IP_ADDRESSES]))
    return dns_names, ip_addresses


class EdgeTls(StackComponent):
    """nginx's certificate chain and key, and the PEM clients should trust.

    With ``tls.certificate`` set the user's chain and key pass through and no
    resource is created; otherwise an ECDSA P-256 CA signs a server certificate
    for the public URL's host (and localhost, 127.0.0.1).
    """

    certificate: pulumi.Output[str]
    """PEM chain nginx serves."""
    private_key: pulumi.Output[str]
    """PEM key of ``certificate``; always a secret."""
    ca_certificate: pulumi.Output[str]
    """PEM clients should trust: the generated CA, or the user's chain."""

    mode: str
    """provided or generated (config.TLS_MODES)."""

    def __init__(self, name: str, *, tls: TlsConfig, public_url: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(name, opts)
        self.mode = tls.mode
        if tls.provided:
            self.certificate = pulumi.Output.from_input(tls.certificate)
            self.private_key = pulumi.Output.secret(tls.key.get_secret_value())
            self.ca_certificate = pulumi.Output.from_input(tls.certificate)
        else:
            self._generate(name, public_url)
        self.register_outputs({
            "certificate": self.certificate,
            "private_key": self.private_key,
            "ca_certificate": self.ca_certificate,
        })

    def _generate(self, name: str, public_url: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        host = urlsplit(public_url).hostname
        dns_names, ip_addresses = subject_alt_names(public_url)

        self.ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        self.ca_cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=pulumi.Output.secret(self.ca_key.private_key_pem),
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{PROJECT} edge CA", organization=PROJECT),
            is_ca_certificate=True,
            allowed_uses=["cert_signing", "crl_signing"],
            validity_period_hours=CA_VALIDITY_HOURS,
            early_renewal_hours=CA_EARLY_RENEWAL_HOURS,
            opts=child,
        )
        self.server_key = tls.PrivateKey(f"{name}-server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        self.server_request = tls.CertRequest(
            f"{name}-server-request",
            private_key_pem=pulumi.Output.secret(self.server_key.private_key_pem),
            subject=tls.CertRequestSubjectArgs(common_name=host, organization=PROJECT),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            opts=child,
        )
        self.server_cert = tls.LocallySignedCert(
            f"{name}-server",
            cert_request_pem=self.server_request.cert_request_pem,
            ca_private_key_pem=pulumi.Output.secret(self.ca_key.private_key_pem),
            ca_cert_pem=self.ca_cert.cert_pem,
            allowed_uses=["server_auth", "digital_signature", "key_encipherment"],
            validity_period_hours=SERVER_VALIDITY_HOURS,
            early_renewal_hours=SERVER_EARLY_RENEWAL_HOURS,
            opts=child,
        )
        # The CA stays out of the served chain: clients that trust it have it.
        self.certificate = self.server_cert.cert_pem
        self.private_key = pulumi.Output.secret(self.server_key.private_key_pem)
        self.ca_certificate = self.ca_cert.cert_pem
