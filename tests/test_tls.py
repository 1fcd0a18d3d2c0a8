"""EdgeTls under Pulumi mocks, and the pulumi-tls stand-in (tests/tls_mocks.py) it is tested with."""

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from components.tls import (
    CA_EARLY_RENEWAL_HOURS,
    CA_VALIDITY_HOURS,
    SERVER_EARLY_RENEWAL_HOURS,
    SERVER_VALIDITY_HOURS,
    EdgeTls,
    subject_alt_names,
)
from harness import SECRET_SIG
from support import RANDOM_PASSWORD
from tls_mocks import CERT_REQUEST, LOCALLY_SIGNED_CERT, PRIVATE_KEY, SELF_SIGNED_CERT, TYPES, edge_tls_run, tls_state

TLS_TYPES = set(TYPES)
COMPONENT = EdgeTls.TYPE


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def verify_for(leaf: x509.Certificate, ca: x509.Certificate, name: str) -> None:
    """Full path validation as a TLS client does it, for a DNS name or an IP address."""
    try:
        subject = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    PolicyBuilder().store(Store([ca])).build_server_verifier(subject).verify(leaf, [])


def public_key_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- generated -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated():
    return edge_tls_run({"proxy.publicUrl": "https://prefect.example.internal:8443"})


def test_generated_mode_registers_a_ca_and_a_signed_server_certificate(generated):
    component = [r for r in generated.registrations if r.type == COMPONENT]
    assert len(component) == 1
    children = [r for r in generated.registrations if r.type in TLS_TYPES]
    assert sorted(r.type for r in children) == sorted([PRIVATE_KEY, PRIVATE_KEY, SELF_SIGNED_CERT, CERT_REQUEST,
                                                       LOCALLY_SIGNED_CERT])
    assert all(r.parent == component[0].urn for r in children)
    for key in generated.of_type(PRIVATE_KEY):
        assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"]) == ("ECDSA", "P256")
    ca = generated.of_type(SELF_SIGNED_CERT)[0].inputs
    assert ca["isCaCertificate"] is True
    assert ca["allowedUses"] == ["cert_signing", "crl_signing"]
    assert (ca["validityPeriodHours"], ca["earlyRenewalHours"]) == (CA_VALIDITY_HOURS, CA_EARLY_RENEWAL_HOURS)
    server = generated.of_type(LOCALLY_SIGNED_CERT)[0].inputs
    assert server["allowedUses"] == ["server_auth", "digital_signature", "key_encipherment"]
    assert (server["validityPeriodHours"], server["earlyRenewalHours"]) == (
        SERVER_VALIDITY_HOURS, SERVER_EARLY_RENEWAL_HOURS)
    assert SERVER_EARLY_RENEWAL_HOURS < SERVER_VALIDITY_HOURS <= CA_EARLY_RENEWAL_HOURS < CA_VALIDITY_HOURS


def test_the_request_names_the_public_host_and_the_local_checks(generated):
    request = generated.of_type(CERT_REQUEST)[0].inputs
    assert request["dnsNames"] == ["prefect.example.internal", "localhost"]
    assert request["ipAddresses"] == ["127.0.0.1"]
    assert request["subject"]["commonName"] == "prefect.example.internal"


def test_private_keys_stay_secret(generated):
    assert generated.output_is_secret("private_key")
    assert not generated.output_is_secret("certificate")
    assert not generated.output_is_secret("ca_certificate")
    # The CA key is a secret wherever it is an input, even where the provider's
    # own secret marking is not in play (as under these mocks).
    assert generated.of_type(LOCALLY_SIGNED_CERT)[0].input_is_secret("caPrivateKeyPem")
    assert generated.of_type(SELF_SIGNED_CERT)[0].input_is_secret("privateKeyPem")
    assert generated.of_type(CERT_REQUEST)[0].input_is_secret("privateKeyPem")


def test_the_served_certificate_verifies_against_the_exported_ca(generated):
    out = generated.outputs
    leaf, ca = load_cert(out["certificate"]), load_cert(out["ca_certificate"])
    for name in ("prefect.example.internal", "localhost", "127.0.0.1"):
        verify_for(leaf, ca, name)
    with pytest.raises(VerificationError):
        verify_for(leaf, ca, "other.example.internal")
    key = serialization.load_pem_private_key(out["private_key"].encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert public_key_der(key.public_key()) == public_key_der(leaf.public_key())
    assert "BEGIN CERTIFICATE" in out["certificate"] and out["certificate"].count("BEGIN CERTIFICATE") == 1


@pytest.mark.parametrize("url, dns_names, ip_addresses", [
    ("https://192.0.2.10:8443", ["localhost"], ["192.0.2.10", "127.0.0.1"]),
    ("https://[2001:db8::1]", ["localhost"], ["2001:db8::1", "127.0.0.1"]),
    ("https://127.0.0.1:8443", ["localhost"], ["127.0.0.1"]),
    ("https://localhost:8443", ["localhost"], ["127.0.0.1"]),
    ("https://Prefect.Example.com", ["prefect.example.com", "localhost"], ["127.0.0.1"]),
])
def test_ip_hosts_go_to_ip_addresses_without_duplicates(url, dns_names, ip_addresses):
    assert subject_alt_names(url) == (dns_names, ip_addresses)


def test_an_ip_public_host_lands_in_the_certificate():
    run = edge_tls_run({"proxy.publicUrl": "https://192.0.2.10:8443"})
    request = run.of_type(CERT_REQUEST)[0].inputs
    assert request["ipAddresses"] == ["192.0.2.10", "127.0.0.1"] and request["dnsNames"] == ["localhost"]
    verify_for(load_cert(run.outputs["certificate"]), load_cert(run.outputs["ca_certificate"]), "192.0.2.10")


# --- provided ------------------------------------------------------------------------------------


def user_pki():
    key = tls_state(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P384"})
    cert = tls_state(SELF_SIGNED_CERT, {
        "privateKeyPem": key["privateKeyPem"], "subject": {"commonName": "prefect.example.com"},
        "dnsNames": ["prefect.example.com"], "allowedUses": ["server_auth"], "validityPeriodHours": 24,
    })
    return cert["certPem"], key["privateKeyPem"]


def test_provided_mode_passes_the_users_pems_through_with_the_key_secret():
    certificate, key = user_pki()
    run = edge_tls_run({"proxy.publicUrl": "https://prefect.example.com", "tls.certificate": certificate,
                        "tls.key": key})
    assert not [r for r in run.registrations if r.type.startswith("tls:")]
    assert len(run.of_type(COMPONENT)) == 1
    assert run.outputs["certificate"] == certificate
    assert run.outputs["ca_certificate"] == certificate
    assert run.outputs["private_key"] == key
    assert run.output_is_secret("private_key")
    assert not run.output_is_secret("certificate")


# --- the pulumi-tls stand-in ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed():
    ca_key = tls_state(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    ca = tls_state(SELF_SIGNED_CERT, {
        "privateKeyPem": ca_key["privateKeyPem"], "subject": {"commonName": "Test CA", "organization": "prefect-ha"},
        "isCaCertificate": True, "allowedUses": ["cert_signing", "crl_signing"], "validityPeriodHours": 48,
    })
    key = tls_state(PRIVATE_KEY, {"algorithm": "RSA", "rsaBits": 2048})
    request = tls_state(CERT_REQUEST, {
        "privateKeyPem": key["privateKeyPem"], "subject": {"commonName": "prefect.test"},
        "dnsNames": ["prefect.test", "localhost"], "ipAddresses": ["127.0.0.1", "::1"],
    })
    leaf = tls_state(LOCALLY_SIGNED_CERT, {
        "certRequestPem": request["certRequestPem"], "caPrivateKeyPem": ca_key["privateKeyPem"],
        "caCertPem": ca["certPem"], "allowedUses": ["server_auth", "digital_signature", "key_encipherment"],
        "validityPeriodHours": 24, "earlyRenewalHours": 2,
    })
    return {"ca_key": ca_key, "ca": ca, "key": key, "request": request, "leaf": leaf}


def test_private_keys_are_real_and_in_the_providers_formats(signed):
    assert signed["ca_key"]["privateKeyPem"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert signed["key"]["privateKeyPem"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert signed["key"]["privateKeyPemPkcs8"].startswith("-----BEGIN PRIVATE KEY-----")
    assert signed["key"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert signed["key"]["publicKeyOpenssh"].startswith("ssh-rsa ")
    assert signed["key"]["publicKeyFingerprintSha256"].startswith("SHA256:")
    key = serialization.load_pem_private_key(signed["ca_key"]["privateKeyPem"].encode(), password=None)
    assert key.curve.name == "secp256r1"


def test_the_locally_signed_certificate_verifies_against_the_ca_and_carries_the_names(signed):
    leaf, ca = load_cert(signed["leaf"]["certPem"]), load_cert(signed["ca"]["certPem"])
    for name in ("prefect.test", "localhost", "127.0.0.1", "::1"):
        verify_for(leaf, ca, name)
    with pytest.raises(VerificationError):
        verify_for(leaf, ca, "elsewhere.test")
    assert leaf.subject.rfc4514_string() == "CN=prefect.test"
    assert leaf.issuer == ca.subject
    assert public_key_der(leaf.public_key()) == public_key_der(
        serialization.load_pem_private_key(signed["key"]["privateKeyPem"].encode(), password=None).public_key())
    assert signed["leaf"]["certRequestPem"] == signed["request"]["certRequestPem"]  # inputs stay in the state
    assert signed["leaf"]["caKeyAlgorithm"] == "ECDSA"


def test_ca_and_server_extensions_follow_the_inputs(signed):
    leaf, ca = load_cert(signed["leaf"]["certPem"]), load_cert(signed["ca"]["certPem"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ca_usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ca_usage.key_cert_sign and ca_usage.crl_sign and not ca_usage.digital_signature
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(extended) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ski


def test_validity_follows_the_requested_hours(signed):
    leaf = load_cert(signed["leaf"]["certPem"])
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24)
    assert signed["leaf"]["validityEndTime"] == leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert signed["leaf"]["readyForRenewal"] is False
    assert signed["leaf"]["id"] == str(leaf.serial_number)


def test_a_certificate_signed_by_another_ca_does_not_verify(signed):
    other_key = tls_state(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    other_ca = tls_state(SELF_SIGNED_CERT, {
        "privateKeyPem": other_key["privateKeyPem"], "subject": {"commonName": "Test CA", "organization": "prefect-ha"},
        "isCaCertificate": True, "allowedUses": ["cert_signing"], "validityPeriodHours": 48,
    })
    with pytest.raises(VerificationError):
        verify_for(load_cert(signed["leaf"]["certPem"]), load_cert(other_ca["certPem"]), "prefect.test")


def test_a_ca_key_that_does_not_match_the_ca_certificate_is_refused(signed):
    stranger = tls_state(PRIVATE_KEY, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})
    with pytest.raises(ValueError, match="not the key"):
        tls_state(LOCALLY_SIGNED_CERT, {
            "certRequestPem": signed["request"]["certRequestPem"], "caPrivateKeyPem": stranger["privateKeyPem"],
            "caCertPem": signed["ca"]["certPem"], "allowedUses": ["server_auth"], "validityPeriodHours": 1,
        })


def test_secret_wrapped_inputs_are_unwrapped_and_other_types_ignored(signed):
    wrapped = {"privateKeyPem": {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "value": signed["key"]["privateKeyPem"]},
               "subject": {"commonName": "x"}, "dnsNames": ["x.test"]}
    request = tls_state(CERT_REQUEST, wrapped)
    csr = x509.load_pem_x509_csr(request["certRequestPem"].encode())
    assert csr.is_signature_valid
    assert tls_state(RANDOM_PASSWORD, {"length": 8}) is None
