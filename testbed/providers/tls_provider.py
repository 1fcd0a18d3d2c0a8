"""Test double of pulumi-tls as a real provider plugin: genuine keys and certificates.

The cryptography is tests/tls_mocks.py's (the unit tests' model of pulumi-tls);
this adds the provider's lifecycle, as terraform-provider-tls has it:
- every input change replaces, except ``earlyRenewalHours`` (updated in place);
- a certificate inside its early-renewal window (``validityEndTime -
  earlyRenewalHours`` has passed) reads back ``readyForRenewal: true`` and the
  next diff replaces it, as the provider's plan modifier does;
- private key PEMs are secret outputs.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import tls_mocks  # noqa: E402

from plugin import Resource, run  # noqa: E402

CERT_INPUTS = frozenset({
    "allowedUses", "validityPeriodHours", "earlyRenewalHours", "isCaCertificate", "setSubjectKeyId",
    "maxPathLength",
})


class _Tls(Resource):
    def create(self, news, preview, timeout):
        state = tls_mocks.tls_state(self.token, news)
        return str(state.pop("id")), state


class PrivateKey(_Tls):
    token = tls_mocks.PRIVATE_KEY
    inputs = frozenset({"algorithm", "rsaBits", "ecdsaCurve"})
    defaults = {"rsaBits": 2048, "ecdsaCurve": "P224"}
    secret_outputs = frozenset({"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"})


class CertRequest(_Tls):
    token = tls_mocks.CERT_REQUEST
    inputs = frozenset({"privateKeyPem", "subject", "dnsNames", "ipAddresses", "uris"})


def ready_for_renewal(state: dict, now: dt.datetime | None = None) -> bool:
    end = state.get("validityEndTime")
    if not end:
        return False
    now = now or dt.datetime.now(dt.timezone.utc)
    renew_at = dt.datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc) - dt.timedelta(
        hours=int(state.get("earlyRenewalHours") or 0))
    return now >= renew_at


class _Certificate(_Tls):
    updatable = frozenset({"earlyRenewalHours"})
    defaults = {"earlyRenewalHours": 0, "isCaCertificate": False, "setSubjectKeyId": False}

    def diff(self, olds, news):
        changed, replaces = super().diff(olds, news)
        if ready_for_renewal({**olds, "earlyRenewalHours": news.get("earlyRenewalHours")}):
            changed, replaces = [*changed, "readyForRenewal"], [*replaces, "readyForRenewal"]
        return changed, replaces

    def read(self, id_, state):
        return {**state, "readyForRenewal": ready_for_renewal(state)}

    def update(self, id_, olds, news, preview, timeout):
        state = {**olds, **news}
        return {**state, "readyForRenewal": ready_for_renewal(state)}


class SelfSignedCert(_Certificate):
    token = tls_mocks.SELF_SIGNED_CERT
    inputs = CERT_INPUTS | {"privateKeyPem", "subject", "dnsNames", "ipAddresses", "uris", "setAuthorityKeyId"}


class LocallySignedCert(_Certificate):
    token = tls_mocks.LOCALLY_SIGNED_CERT
    inputs = CERT_INPUTS | {"certRequestPem", "caPrivateKeyPem", "caCertPem"}


RESOURCES = [PrivateKey(), CertRequest(), SelfSignedCert(), LocallySignedCert()]

if __name__ == "__main__":
    run("tls", os.environ.get("PREFECT_HA_PLUGIN_VERSION", "5.6.2"), RESOURCES)
