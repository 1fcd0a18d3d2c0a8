"""Make an NSS database that trusts a CA for TLS servers, as Chromium on Linux reads ~/.pki/nssdb.

    python tests/e2e/ui_nss.py DB_DIR < ca.pem

This is `certutil -A -t CT,,` through libnss3 with ctypes (libnss3 comes with Chromium; no
libnss3-tools needed). It runs as a child process of ui_check.py: NSS is initialised once per
process, and a ctypes mistake must not take the test run down.
"""

from __future__ import annotations

import ctypes
import re
import ssl
import sys

# CERTDB_VALID_CA | CERTDB_TRUSTED_CA | CERTDB_TRUSTED_CLIENT_CA for TLS: certutil's "CT,,"
_TRUSTED_CA_FOR_TLS = (1 << 3) | (1 << 4) | (1 << 7)


class _SECItem(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("data", ctypes.c_char_p), ("len", ctypes.c_uint)]


class _CERTCertTrust(ctypes.Structure):
    _fields_ = [("sslFlags", ctypes.c_uint), ("emailFlags", ctypes.c_uint),
                ("objectSigningFlags", ctypes.c_uint)]


def _libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """libnss3 with the signatures used here declared, and libnspr4 (for error codes)."""
    nss = ctypes.CDLL("libnss3.so")
    nspr = ctypes.CDLL("libnspr4.so")
    vp = ctypes.c_void_p
    nss.NSS_InitReadWrite.argtypes = [ctypes.c_char_p]
    nss.PK11_GetInternalKeySlot.restype = vp
    nss.PK11_NeedUserInit.argtypes = [vp]
    nss.PK11_InitPin.argtypes = [vp, ctypes.c_char_p, ctypes.c_char_p]
    nss.PK11_Authenticate.argtypes = [vp, ctypes.c_int, vp]
    nss.PK11_FreeSlot.argtypes = [vp]
    nss.CERT_GetDefaultCertDB.restype = vp
    nss.CERT_NewTempCertificate.restype = vp
    nss.CERT_NewTempCertificate.argtypes = [vp, ctypes.POINTER(_SECItem), ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    nss.PK11_ImportCert.argtypes = [vp, vp, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    nss.CERT_ChangeCertTrust.argtypes = [vp, vp, ctypes.POINTER(_CERTCertTrust)]
    nss.CERT_DestroyCertificate.argtypes = [vp]
    return nss, nspr


def _import_trusted(nss: ctypes.CDLL, nspr: ctypes.CDLL, check, slot: int, n: int, pem: str) -> None:
    """Import one PEM certificate into `slot` and mark it trusted for issuing TLS server certificates."""
    der = ssl.PEM_cert_to_DER_cert(pem)
    item = _SECItem(0, der, len(der))
    cert = nss.CERT_NewTempCertificate(nss.CERT_GetDefaultCertDB(), ctypes.byref(item), None, 0, 1)
    if not cert:
        raise RuntimeError(f"CERT_NewTempCertificate failed: NSS error {nspr.PR_GetError()}")
    try:
        check(nss.PK11_ImportCert(slot, cert, 0, f"ui-check CA {n}".encode(), 0), "PK11_ImportCert")
        trust = _CERTCertTrust(_TRUSTED_CA_FOR_TLS, 0, 0)
        check(nss.CERT_ChangeCertTrust(nss.CERT_GetDefaultCertDB(), cert, ctypes.byref(trust)),
              "CERT_ChangeCertTrust")
    finally:
        nss.CERT_DestroyCertificate(cert)


def trust_ca(db_dir: str, ca_pem: str) -> None:
    """Create the NSS database `db_dir` (it must exist) holding the CA certificate(s) of `ca_pem`."""
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", ca_pem, re.S)
    if not certs:
        raise ValueError("ca_certificate holds no PEM certificate")
    nss, nspr = _libraries()

    def check(status: int, what: str) -> None:
        if status != 0:  # SECSuccess
            raise RuntimeError(f"{what} failed: NSS error {nspr.PR_GetError()}")

    check(nss.NSS_InitReadWrite(f"sql:{db_dir}".encode()), "NSS_InitReadWrite")
    slot = nss.PK11_GetInternalKeySlot()
    try:
        if nss.PK11_NeedUserInit(slot):
            check(nss.PK11_InitPin(slot, None, b""), "PK11_InitPin")  # empty password, as certutil -N --empty-password
        check(nss.PK11_Authenticate(slot, 1, None), "PK11_Authenticate")
        for n, pem in enumerate(certs):
            _import_trusted(nss, nspr, check, slot, n, pem)
    finally:
        nss.PK11_FreeSlot(slot)
    check(nss.NSS_Shutdown(), "NSS_Shutdown")


if __name__ == "__main__":
    trust_ca(sys.argv[1], sys.stdin.read())
