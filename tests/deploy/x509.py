"""deploy/nginx/pyai-x509.conf run by a real nginx, and the throwaway CAs its certificates come from.

``Ca`` makes a CA (``cryptography``, as tests/fixtures/issuer.py makes its issuer's), its
server certificate for 127.0.0.1 and localhost, and client certificates of any subject
(``client``), each written as PEM files under a directory.  ``X509Nginx`` is ``front.Nginx``
running the TLS front end instead of the plain one: the same machine lines, plus the three
certificate files it names.
"""

import datetime
import ipaddress

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy import front
from deploy.front import Nginx
from deploy.unit import DEPLOY

X509_CONF = DEPLOY / "nginx" / "pyai-x509.conf"
# The shipped file's certificate lines -> the attribute of X509Nginx that names the file here.
SERVER_CERT = "    ssl_certificate /etc/pki/tls/certs/pyai.pem;"
SERVER_KEY = "    ssl_certificate_key /etc/pki/tls/private/pyai.key;"
CLIENT_CAS = "    ssl_client_certificate /etc/pki/tls/certs/client-cas.pem;"
LISTEN = "    listen 443 ssl;\n"
ATTRIBUTES = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
              "CN": NameOID.COMMON_NAME}  # fmt: skip


def name_of(pairs):
    """The x509.Name of (type, value) pairs, most general first (as the slash form writes them)."""
    return x509.Name([x509.NameAttribute(ATTRIBUTES[kind], value) for kind, value in pairs])


def _write_key(path, key):
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


class Ca:
    """A CA valid for a day, its PEM in ``ca_file``; ``server_cert`` and ``server_key`` name its
    certificate for 127.0.0.1 and localhost."""

    def __init__(self, directory, label):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.label = label
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = name_of([("O", "pyai tests"), ("CN", f"pyai test CA {label}")])
        usage = dict.fromkeys(
            ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "encipher_only", "decipher_only"), False,
        )  # fmt: skip
        ca = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = str(self.directory / f"{label}-ca.pem")
        (self.directory / f"{label}-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        self.server_cert, self.server_key = self._issue(
            "server", [("CN", "localhost")], ExtendedKeyUsageOID.SERVER_AUTH, x509.SubjectAlternativeName(names)
        )

    def _builder(self, subject, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(minutes=5))
            .not_valid_after(self.now + datetime.timedelta(days=1))
        )

    def _issue(self, stem, subject, purpose, *extensions):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            self._builder(name_of(subject), key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path = self.directory / f"{self.label}-{stem}.pem"
        key_path = self.directory / f"{self.label}-{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return str(cert_path), str(key_path)

    def client(self, stem, subject):
        """(certificate file, key file) of a client certificate of ``subject``, (type, value) pairs
        most general first: what ``requests``' ``cert=`` takes."""
        return self._issue(stem, subject, ExtendedKeyUsageOID.CLIENT_AUTH)


class X509Nginx(Nginx):
    """deploy/nginx/pyai-x509.conf before pyai on ``upstream_port``: TLS with ``ca``'s server
    certificate, client certificates verified against ``client_cas`` (a PEM file)."""

    name = "nginx (TLS)"
    conf = X509_CONF

    def __init__(self, work, upstream_port, ca, client_cas, edit=None):
        super().__init__(work, upstream_port, edit)
        self.ca = ca
        self.client_cas = client_cas

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def machine_lines(self):
        lines = super().machine_lines()
        del lines[front.LISTEN]  # pyai.conf's plain one
        return {
            **lines,
            LISTEN: f"    listen 127.0.0.1:{self.port} ssl;\n",
            SERVER_CERT: f"    ssl_certificate {self.ca.server_cert};",
            SERVER_KEY: f"    ssl_certificate_key {self.ca.server_key};",
            CLIENT_CAS: f"    ssl_client_certificate {self.client_cas};",
        }

    def ready(self):
        status = requests.get(self.url + "/", verify=self.ca.ca_file, timeout=2).status_code
        return status == 200 or f"GET / answered {status}"
