"""The TLS service's certificate folder: a CA, the server's certificate, one certificate per thing and who owns which.

Layout of DIR (made by `iotjobs-local certs init DIR` and `certs thing DIR NAME`, read by `serve --tls DIR`):

    ca.pem, ca.der          the CA devices trust (PEM for desktop tools, DER for boards)
    ca.key                  the CA's private key (only `certs thing` reads it)
    server/{cert,key}.pem   the service's certificate, for localhost and 127.0.0.1 (plus any --name)
    things/NAME/{cert,key}.{pem,der}   thing NAME's certificate and key (subject CN=NAME, see common_name)
    things.json             which certificate belongs to which thing: AWS's attach-thing-principal

Keys are EC P-256 (what a board's Mbed TLS handshakes fastest), made by the openssl CLI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER_NAMES = ("localhost", "127.0.0.1")
RECORD = "things.json"
DAYS = 3650
# AWS's account and region as the local service reports them (its ARNs), and its thing name pattern.
CERT_ARN_PREFIX = "arn:aws:iot:us-east-1:123456789012:cert/"
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
CN_MAX = 64
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class CertificateError(RuntimeError):
    """A folder that is not a CA folder, a bad thing name, or openssl failing."""


def common_name(thing: str) -> str:
    """The subject's Common Name of a thing's certificate: the thing's name, or for a name longer than X.509
    allows there (64 characters) its start and a hash of the whole. The record says which thing it is."""
    if len(thing) <= CN_MAX:
        return thing
    digest = hashlib.sha256(thing.encode()).hexdigest()[:16]
    return f"{thing[:CN_MAX - len(digest) - 1]}-{digest}"


def certificate_id(der: bytes) -> str:
    """AWS's certificateId: the SHA-256 of the certificate's DER, in hex."""
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class ThingCertificate:
    """The four files of one thing's certificate and key."""

    thing: str
    directory: Path

    @property
    def cert_pem(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def key_pem(self) -> Path:
        return self.directory / "key.pem"

    @property
    def cert_der(self) -> Path:
        return self.directory / "cert.der"

    @property
    def key_der(self) -> Path:
        return self.directory / "key.der"

    @property
    def certificate_id(self) -> str:
        return certificate_id(self.cert_der.read_bytes())


@dataclass(frozen=True)
class CertificateFolder:
    """A CA folder made by `init` (see the module docstring for its layout)."""

    root: Path

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_der(self) -> Path:
        return self.root / "ca.der"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server" / "cert.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server" / "key.pem"

    @property
    def record(self) -> Path:
        return self.root / RECORD

    def check(self) -> CertificateFolder:
        missing = [p.name for p in (self.ca_pem, self.ca_der, self.server_cert, self.server_key) if not p.is_file()]
        if missing:
            raise CertificateError(f"{self.root} is not a CA folder (no {', '.join(missing)}): "
                                   f"run `iotjobs-local certs init {self.root}`")
        return self

    def thing(self, name: str) -> ThingCertificate:
        return ThingCertificate(name, self.root / "things" / name)

    def things(self) -> dict[str, dict[str, Any]]:
        """The record: thing name -> {certificateId, certificateArn, commonName, files}."""
        if not self.record.exists():
            return {}
        things: dict[str, dict[str, Any]] = json.loads(self.record.read_text())
        return things


def openssl(*args: str | Path) -> None:
    executable = shutil.which("openssl")
    if executable is None:
        raise CertificateError("the openssl CLI is missing (Debian: apt-get install openssl)")
    done = subprocess.run([executable, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise CertificateError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def private(path: Path) -> None:
    # Keys stay the owner's; mosquitto reads the server key as the same user (as root, broker.py keeps it root).
    os.chmod(path, 0o600)


def sign(folder: CertificateFolder, key: Path, cert: Path, subject: str, extensions: str) -> None:
    """A new key at `key` and a certificate for it at `cert`, signed by the folder's CA."""
    with tempfile.TemporaryDirectory(prefix="iotjobs-certs-") as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "req.ext"
        ext.write_text(extensions)
        openssl("req", *EC_KEY, "-keyout", key, "-out", csr, "-subj", subject)
        private(key)
        # A random serial: two certificates of one CA must never share one, and no serial file to keep.
        openssl("x509", "-req", "-in", csr, "-CA", folder.ca_pem, "-CAkey", folder.ca_key,
                "-set_serial", "0x" + secrets.token_hex(16), "-days", str(DAYS), "-extfile", ext, "-out", cert)


def san(name: str) -> str:
    return f"IP:{name}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:]*", name) else f"DNS:{name}"


def init(root: str | Path, names: tuple[str, ...] = SERVER_NAMES, renew_server: bool = False) -> CertificateFolder:
    """Make the CA and the server certificate in `root`; an existing CA is kept, its server certificate too
    unless `renew_server` (thing certificates stay valid either way: the CA is the same)."""
    folder = CertificateFolder(Path(root))
    if folder.ca_pem.exists():
        if renew_server:
            server_certificate(folder, names, folder.server_cert, folder.server_key)
        return folder.check()
    folder.root.mkdir(parents=True, exist_ok=True)
    (folder.root / "server").mkdir(exist_ok=True)
    # A name of its own, so that certificates of two local CAs never claim the same issuer.
    openssl("req", "-x509", *EC_KEY, "-keyout", folder.ca_key, "-out", folder.ca_pem, "-days", str(DAYS),
            "-subj", f"/CN=iotjobs-local CA {secrets.token_hex(4)}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    private(folder.ca_key)
    openssl("x509", "-in", folder.ca_pem, "-outform", "DER", "-out", folder.ca_der)
    server_certificate(folder, names, folder.server_cert, folder.server_key)
    return folder


def server_certificate(folder: CertificateFolder, names: tuple[str, ...], cert: Path, key: Path) -> None:
    """A server certificate from the folder's CA for `names` (host names or IP addresses), at cert and key."""
    if not names:
        raise CertificateError("a server certificate needs at least one name")
    sans = ",".join(san(name) for name in names)
    sign(folder, key, cert, f"/CN={names[0]}",
         f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n"
         "basicConstraints=critical,CA:FALSE\n")


def issue_thing(root: str | Path, name: str) -> ThingCertificate:
    """Make thing `name`'s certificate and key and record that it belongs to the thing (kept if already there)."""
    if not THING_NAME.fullmatch(name):
        raise CertificateError(f"{name!r} is not a thing name (1-128 of a-z A-Z 0-9 : _ -)")
    folder = CertificateFolder(Path(root)).check()
    if not folder.ca_key.exists():
        raise CertificateError(f"{folder.ca_key} is missing: only the folder `certs init` made can issue certificates")
    thing = folder.thing(name)
    if not thing.cert_der.exists():
        thing.directory.mkdir(parents=True, exist_ok=True)
        sign(folder, thing.key_pem, thing.cert_pem, f"/CN={common_name(name)}",
             "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")
        # Boards take DER only (MicroPython's TLS rejects PEM).
        openssl("pkey", "-in", thing.key_pem, "-outform", "DER", "-out", thing.key_der)
        private(thing.key_der)
        openssl("x509", "-in", thing.cert_pem, "-outform", "DER", "-out", thing.cert_der)
    record(folder, thing)
    return thing


def record(folder: CertificateFolder, thing: ThingCertificate) -> None:
    things = folder.things()
    cert_id = thing.certificate_id
    things[thing.thing] = {
        "certificateId": cert_id,
        "certificateArn": CERT_ARN_PREFIX + cert_id,
        "commonName": common_name(thing.thing),
        "files": f"things/{thing.thing}",
    }
    # Written whole and renamed over: a running service may read it at any moment.
    partial = folder.record.with_name(RECORD + ".part")
    partial.write_text(json.dumps(things, indent=2, sort_keys=True) + "\n")
    partial.replace(folder.record)


# ---- the command line: `iotjobs-local certs init DIR`, `iotjobs-local certs thing DIR NAME` -----------------


def add_commands(commands: Any) -> None:
    """Add `certs` and its subcommands to the CLI's subparsers."""
    certs = commands.add_parser("certs", help="make the CA, server and thing certificates `serve --tls DIR` uses")
    actions = certs.add_subparsers(dest="certs_command", required=True)
    make = actions.add_parser("init", help="make the CA and the server's certificate in DIR (kept if there)")
    make.add_argument("dir", metavar="DIR")
    make.add_argument("--name", action="append", default=[], metavar="HOST",
                      help="another host name or IP address for the server's certificate (e.g. the laptop's LAN "
                           "address, for boards); localhost and 127.0.0.1 are always in it. With an existing CA, "
                           "the server's certificate is made again with these names")
    thing = actions.add_parser("thing", help="make thing NAME's certificate and key in DIR/things/NAME")
    thing.add_argument("dir", metavar="DIR")
    thing.add_argument("name", metavar="NAME")


def run(args: argparse.Namespace) -> int:
    try:
        if args.certs_command == "init":
            existed = (Path(args.dir) / "ca.pem").exists()
            names = SERVER_NAMES + tuple(n for n in args.name if n not in SERVER_NAMES)
            folder = init(args.dir, names, renew_server=bool(args.name))
            server = "made" if not existed or args.name else "kept"
            print(f"CA {folder.ca_pem} ({folder.ca_der}) {'kept' if existed else 'made'}; "
                  f"server certificate {folder.server_cert} {server}")
        else:
            thing = issue_thing(args.dir, args.name)
            print(f"thing {thing.thing}: {thing.cert_der} {thing.key_der} (PEM beside them); "
                  f"certificate {thing.certificate_id}")
    except CertificateError as exc:
        print(f"iotjobs-local: {exc}", file=sys.stderr)
        return 1
    return 0
