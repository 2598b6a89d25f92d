"""A real OpenLDAP ``slapd`` for the tests: loopback, a free port, a throw-away directory.

Never the system instance: its own slapd.conf, database and pid file under a temporary directory,
started as ``slapd -d 0 -f <conf> -h ldap://127.0.0.1:PORT/ [ldaps://127.0.0.1:PORT2/]``. The data:
two bases (ou=people and ou=staff under dc=example,dc=com), a service account, and with ``tls``
a certificate for 127.0.0.1 signed by a CA of its own (``ca_file``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from tests.servers import PausableServer, free_port

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
SUFFIX = "dc=example,dc=com"
PEOPLE, STAFF = f"ou=people,{SUFFIX}", f"ou=staff,{SUFFIX}"
SERVICE_DN, SERVICE_PASSWORD = f"cn=vmpooler-svc,{SUFFIX}", "svc-pw"
#: user -> (base, password); "twin" exists under both bases (ambiguous for a service-account search)
USERS = {"alice": (PEOPLE, "alice-pw"), "bob": (STAFF, "bob-pw"), "carol, jr": (PEOPLE, "carol-pw")}
TWIN_PASSWORD = "twin-pw"

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {root}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
# an unauthenticated bind (a DN with an empty password) would succeed here: the store must refuse it
allow bind_anon_cred
{tls}
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw admin-pw
directory {root}/data
access to attrs=userPassword by self read by anonymous auth by * none
access to * by * read
"""


def _entries() -> str:
    people = [(f"uid={user}", base, password) for user, (base, password) in USERS.items()]
    people += [("uid=twin", PEOPLE, TWIN_PASSWORD), ("uid=twin", STAFF, TWIN_PASSWORD)]
    blocks = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example"]
    blocks += [f"dn: {ou}\nobjectClass: organizationalUnit\nou: {ou.split(',')[0][3:]}" for ou in (PEOPLE, STAFF)]
    blocks.append(f"dn: {SERVICE_DN}\nobjectClass: person\ncn: vmpooler-svc\nsn: svc\n"
                  f"userPassword: {SERVICE_PASSWORD}")
    for rdn, base, password in people:
        uid = rdn[4:]
        escaped = uid.replace(",", "\\,")
        blocks.append(f"dn: uid={escaped},{base}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                      f"userPassword: {password}")
    return "\n\n".join(blocks) + "\n"


def _make_certificates(root: str) -> str:
    """A CA and a server certificate for 127.0.0.1 (openssl); the TLS lines of slapd.conf."""
    run = lambda *args: subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=vmpooler test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(root, "san.ext"), "w") as handle:
        handle.write("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return (f"TLSCACertificateFile {root}/ca.pem\nTLSCertificateFile {root}/server.pem\n"
            f"TLSCertificateKeyFile {root}/server.key")


class Slapd(PausableServer):
    def __init__(self, root: str, tls: bool = False):
        self.root, self.tls = root, tls
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.ca_file = os.path.join(root, "ca.pem") if tls else None
        self.process = None
        os.makedirs(os.path.join(root, "data"))
        self.conf = os.path.join(root, "slapd.conf")
        with open(self.conf, "w") as handle:
            handle.write(_CONF.format(root=root, suffix=SUFFIX, tls=_make_certificates(root) if tls else ""))
        ldif = os.path.join(root, "data.ldif")
        with open(ldif, "w") as handle:
            handle.write(_entries())
        subprocess.run([SLAPADD, "-f", self.conf, "-l", ldif], check=True, capture_output=True)

    def start(self) -> None:
        urls = f"ldap://127.0.0.1:{self.port}/" + (f" ldaps://127.0.0.1:{self.tls_port}/" if self.tls else "")
        # -d 0: stay in the foreground (our child, so we can stop, pause and kill it)
        self.process = subprocess.Popen([SLAPD, "-d", "0", "-f", self.conf, "-h", urls],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not start listening within 15 s")

