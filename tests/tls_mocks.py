"""What the pulumi-tls provider would return, computed for real with `cryptography`.

Pulumi mocks call ``tls_state(typ, inputs)`` for the four resource types the
program uses; inputs and outputs are camelCased as on the wire. Keys and
certificates are genuine, so a test can verify a locally signed certificate
against its CA, or hand both to a real nginx.

Only what the program asks for is modelled; fields mirror pulumi-tls v5:
- PrivateKey: algorithm RSA, ECDSA or ED25519 (ecdsaCurve, rsaBits); the PEMs,
  OpenSSH forms and fingerprints.
- SelfSignedCert / LocallySignedCert: subject, validityPeriodHours,
  isCaCertificate, allowedUses (key usages and extended key usages by the
  provider's names), setSubjectKeyId / setAuthorityKeyId as Go's x509 applies
  them (a CA always gets a subject key id; a signed certificate an authority
  key id from its CA's).
- CertRequest: subject, dnsNames, ipAddresses, uris; LocallySignedCert copies
  the request's subject and names, as the provider does.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
CERT_REQUEST = "tls:index/certRequest:CertRequest"
LOCALLY_SIGNED_CERT = "tls:index/locallySignedCert:LocallySignedCert"
TYPES = (PRIVATE_KEY, SELF_SIGNED_CERT, CERT_REQUEST, LOCALLY_SIGNED_CERT)

_SECRET_SIG = "4dabf18193072939515e22adb298388d"
_CURVES = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}
_SUBJECT_FIELDS = {
    "commonName": NameOID.COMMON_NAME,
    "organization": NameOID.ORGANIZATION_NAME,
    "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "country": NameOID.COUNTRY_NAME,
    "province": NameOID.STATE_OR_PROVINCE_NAME,
    "locality": NameOID.LOCALITY_NAME,
    "postalCode": NameOID.POSTAL_CODE,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}
_KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}
_EXTENDED_KEY_USAGES = {
    "any_extended": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}


def tls_state(typ: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """Inputs plus the provider's outputs for a pulumi-tls resource; None for other types."""
    make = {
        PRIVATE_KEY: _private_key,
        SELF_SIGNED_CERT: _self_signed_cert,
        CERT_REQUEST: _cert_request,
        LOCALLY_SIGNED_CERT: _locally_signed_cert,
    }.get(typ)
    if make is None:
        return None
    plain = _plain(dict(inputs))
    return {**plain, **make(plain)}


def _plain(value: Any) -> Any:
    """Secret inputs may still be wrapped when a mock hands them over."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) is not None and "value" in value:
            return _plain(value["value"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- keys -----------------------------------------------------------------------------------------


def _private_key(inputs: dict[str, Any]) -> dict[str, Any]:
    algorithm = inputs.get("algorithm", "RSA")
    if algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits") or 2048))
        traditional = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "ECDSA":
        curve = inputs.get("ecdsaCurve") or "P224"
        key = ec.generate_private_key(_CURVES[curve]())
        traditional = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
        traditional = serialization.PrivateFormat.PKCS8  # the provider has no other PEM for it
    else:
        raise ValueError(f"pulumi-tls has no key algorithm {algorithm!r}")
    pem = serialization.Encoding.PEM
    public = key.public_key()
    public_der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    openssh_public = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    openssh_blob = base64.b64decode(openssh_public.split()[1])
    md5 = hashlib.md5(openssh_blob).hexdigest()
    return {
        "privateKeyPem": key.private_bytes(pem, traditional, serialization.NoEncryption()).decode(),
        "privateKeyPemPkcs8": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "privateKeyOpenssh": key.private_bytes(
            pem, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode(),
        "publicKeyPem": public.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": openssh_public.decode() + "\n",
        "publicKeyFingerprintMd5": ":".join(md5[i:i + 2] for i in range(0, len(md5), 2)),
        "publicKeyFingerprintSha256": "SHA256:"
        + base64.b64encode(hashlib.sha256(openssh_blob).digest()).decode().rstrip("="),
        "ecdsaCurve": inputs.get("ecdsaCurve") or "P224",
        "rsaBits": int(inputs.get("rsaBits") or 2048),
        "id": hashlib.sha1(public_der).hexdigest(),
    }


def _load_key(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _key_algorithm(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA"
    return "ED25519"


def _signing_hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


# --- names and extensions -------------------------------------------------------------------------


def _subject(inputs: dict[str, Any]) -> x509.Name:
    subject = inputs.get("subject") or {}
    if isinstance(subject, list):  # older schema: a one-element list
        subject = subject[0] if subject else {}
    attributes = []
    for key, oid in _SUBJECT_FIELDS.items():
        value = subject.get(key)
        if value:
            attributes.append(x509.NameAttribute(oid, str(value)))
    for street in subject.get("streetAddresses") or []:
        attributes.append(x509.NameAttribute(NameOID.STREET_ADDRESS, street))
    return x509.Name(attributes)


def _alt_names(inputs: dict[str, Any]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in inputs.get("dnsNames") or []]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []]
    names += [x509.UniformResourceIdentifier(u) for u in inputs.get("uris") or []]
    return names


def _usage_extensions(builder: x509.CertificateBuilder, uses: list[str]) -> x509.CertificateBuilder:
    unknown = [u for u in uses if u not in _KEY_USAGES and u not in _EXTENDED_KEY_USAGES]
    if unknown:
        raise ValueError(f"pulumi-tls has no allowed use {unknown}")
    flags = {attr: False for attr in _KEY_USAGES.values()}
    for use in uses:
        if use in _KEY_USAGES:
            flags[_KEY_USAGES[use]] = True
    if any(flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    extended = [_EXTENDED_KEY_USAGES[u] for u in uses if u in _EXTENDED_KEY_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    return builder


def _certificate(
    inputs: dict[str, Any], *, subject: x509.Name, alt_names: list[x509.GeneralName], public_key,
    issuer: x509.Name, signing_key, issuer_cert: x509.Certificate | None,
) -> dict[str, Any]:
    hours = int(inputs["validityPeriodHours"])
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    end = start + dt.timedelta(hours=hours)
    is_ca = bool(inputs.get("isCaCertificate"))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    max_path = inputs.get("maxPathLength")
    builder = builder.add_extension(
        x509.BasicConstraints(ca=is_ca, path_length=int(max_path) if is_ca and max_path else None), critical=True
    )
    builder = _usage_extensions(builder, list(inputs.get("allowedUses") or []))
    if alt_names:
        # Go marks the extension critical when the subject is empty (RFC 5280 4.2.1.6).
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=len(subject) == 0)
    if is_ca or inputs.get("setSubjectKeyId"):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if issuer_cert is not None:
        try:
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
        except x509.ExtensionNotFound:
            pass
    elif inputs.get("setAuthorityKeyId"):
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
    cert = builder.sign(signing_key, _signing_hash(signing_key))
    return {
        "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "validityStartTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "validityEndTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "readyForRenewal": False,
        "id": str(cert.serial_number),
    }


# --- resources ------------------------------------------------------------------------------------


def _self_signed_cert(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    subject = _subject(inputs)
    state = _certificate(
        inputs, subject=subject, alt_names=_alt_names(inputs), public_key=key.public_key(),
        issuer=subject, signing_key=key, issuer_cert=None,
    )
    return {**state, "keyAlgorithm": _key_algorithm(key)}


def _cert_request(inputs: dict[str, Any]) -> dict[str, Any]:
    key = _load_key(inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_subject(inputs))
    names = _alt_names(inputs)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, _signing_hash(key))
    return {
        "certRequestPem": csr.public_bytes(serialization.Encoding.PEM).decode(),
        "keyAlgorithm": _key_algorithm(key),
        "id": hashlib.sha1(csr.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }


def _locally_signed_cert(inputs: dict[str, Any]) -> dict[str, Any]:
    csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
    if not csr.is_signature_valid:
        raise ValueError("certRequestPem carries an invalid signature")
    ca_key = _load_key(inputs["caPrivateKeyPem"])
    ca_cert = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
    if ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != ca_key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError("caPrivateKeyPem is not the key of caCertPem")
    try:
        alt_names = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        alt_names = []
    state = _certificate(
        inputs, subject=csr.subject, alt_names=alt_names, public_key=csr.public_key(),
        issuer=ca_cert.subject, signing_key=ca_key, issuer_cert=ca_cert,
    )
    return {**state, "caKeyAlgorithm": _key_algorithm(ca_key)}


def edge_tls_run(overrides: dict[str, str]):
    """EdgeTls alone under the harness's mocks (pulumi-tls computed for real by
    tls_state), with its three attributes exported."""
    import pulumi

    from components.config import load_paths
    from components.tls import EdgeTls
    from harness import run_program

    config = load_paths({"tls.enabled": "true", **overrides})

    def program():
        edge = EdgeTls("edge", tls=config.tls, public_url=config.proxy.public_url)
        pulumi.export("certificate", edge.certificate)
        pulumi.export("private_key", edge.private_key)
        pulumi.export("ca_certificate", edge.ca_certificate)

    run = run_program("dev", program=program)
    assert run.error is None, run.error
    return run
