"""The LDAP auth store (``:auth: provider: ldap``), with the ``ldap3`` library.

As the original: without a service account, a simple bind as ``<user_object>=<user>,<base>`` for
every base and user_object in turn, the first success wins; with ``service_account_hash``, bind as
that account, search each base for ``(<user_object>=<user>)`` and bind as the entry found. Unlike
the original, the user name is escaped (a DN value, a filter value), an empty password is refused
before the directory is asked (an unauthenticated bind would succeed), and a search that finds more
than one entry authenticates nobody.

Nothing is cached: every login asks the directory. When the directory cannot be reached, does not
answer within the timeouts, or refuses the service account, ``authenticate`` raises
``AuthUnavailable`` (the API answers 503). While it is known to be down, one caller at a time
probes it and the others fail at once, so a hung directory does not pile up waiting threads.
"""
from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from typing import Dict, Iterator, Optional, Tuple

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from vmpooler.auth.base import AuthStore, AuthUnavailable
from vmpooler.auth_config import LdapConfig

log = logging.getLogger("vmpooler.auth.ldap")

# Result codes that say the directory, not the credentials, is the problem: busy, unavailable.
UNAVAILABLE_RESULTS = {51, 52}
# What a TLS floor of TLSv1_3 turns off (lower floors are the system OpenSSL's own, TLSv1.2 today).
_TLS_FLOORS: Dict[str, Tuple[str, ...]] = {"TLSv1_3": ("OP_NO_TLSv1", "OP_NO_TLSv1_1", "OP_NO_TLSv1_2")}
# Failures of the connection (refused, timed out, TLS), whatever ldap3 wraps them in, and any
# other error of ldap3's: the directory could not answer the question, which is not the user's fault.
_UNREACHABLE = (ldap_errors.LDAPException, ssl.SSLError, OSError)


class LdapStore(AuthStore):
    def __init__(self, config: LdapConfig):
        self.config = config
        self._lock = threading.Lock()
        self._down = False  # the last attempt could not reach the directory
        self._probing = False  # a caller is finding out whether it is back

    def authenticate(self, user: str, password: str) -> bool:
        # The directory ignores surrounding spaces (and case) when it matches a uid: " alice" would
        # log in as alice but own tokens under another name.
        if not user or not password or user != user.strip() or not user.isprintable():
            return False
        with self._attempt():
            if self.config.service_dn:
                return self._search_and_bind(user, password)
            return any(self._bind(f"{user_object}={escape_rdn(user)},{base}", password)
                       for base in self.config.bases for user_object in self.config.user_objects)

    @contextlib.contextmanager
    def _attempt(self) -> Iterator[None]:
        """Fails at once while another caller probes a directory found down; records whether
        this attempt reached it."""
        with self._lock:
            if self._down and self._probing:
                raise AuthUnavailable("the LDAP directory is unavailable")
            probing = self._probing = self._down
        reached = False
        try:
            yield
            reached = True
        finally:
            with self._lock:
                if reached and self._down:
                    log.warning("LDAP directory %s:%d answers again", self.config.host, self.config.port)
                self._down = not reached
                if probing:
                    self._probing = False

    def _search_and_bind(self, user: str, password: str) -> bool:
        """Bind as the service account, find the user's entry, bind as it."""
        with self._connection(self.config.service_dn, self.config.service_password) as service:
            if not service.bind():
                self._check_result(service)
                log.error("LDAP service account %s cannot bind: %s", self.config.service_dn,
                          service.result.get("description"))
                raise AuthUnavailable("the LDAP service account cannot bind")
            found = []
            for base in self.config.bases:
                for user_object in self.config.user_objects:
                    dn = self._find(service, base, f"({user_object}={escape_filter_chars(user)})")
                    if dn is not None:
                        found.append(dn)
        return any(self._bind(dn, password) for dn in found)

    def _find(self, service, base: str, search: str) -> Optional[str]:
        """The DN of the one entry under ``base`` matching ``search``; None for none or several."""
        service.search(base, search, search_scope=ldap3.SUBTREE, attributes=[], size_limit=2)
        self._check_result(service)
        found = [item["dn"] for item in service.response or () if item.get("type") == "searchResEntry"]
        if len(found) > 1 or service.result.get("result") == 4:  # sizeLimitExceeded
            log.warning("LDAP search %s under %s matches several entries; nobody is authenticated by it",
                        search, base)
            return None
        return found[0] if found else None

    def _bind(self, dn: str, password: str) -> bool:
        with self._connection(dn, password) as connection:
            if connection.bind():
                return True
            self._check_result(connection)
            return False

    @contextlib.contextmanager
    def _connection(self, dn: Optional[str], password: Optional[str]) -> Iterator[ldap3.Connection]:
        """An open (TLS when configured) connection not yet bound; any failure to reach the
        directory, there or in the block, is AuthUnavailable."""
        connection = None
        try:
            connection = ldap3.Connection(self._server(), user=dn, password=password, authentication=ldap3.SIMPLE,
                                          receive_timeout=self.config.receive_timeout, read_only=True,
                                          auto_bind=ldap3.AUTO_BIND_NONE, raise_exceptions=False)
            connection.open()
            if self.config.encryption == "start_tls" and not connection.start_tls():
                raise AuthUnavailable("the LDAP directory refused StartTLS")
            yield connection
        except _UNREACHABLE as error:
            log.warning("LDAP directory %s:%d unavailable: %s", self.config.host, self.config.port, error)
            raise AuthUnavailable("the LDAP directory is unavailable") from error
        finally:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.unbind()

    def _server(self) -> ldap3.Server:
        """A new Server each time: ldap3 keeps per-server connection state we do not share
        between threads."""
        return ldap3.Server(self.config.host, port=self.config.port,
                            use_ssl=self.config.encryption == "simple_tls", tls=self._tls(),
                            get_info=ldap3.NONE, connect_timeout=self.config.connect_timeout)

    def _tls(self) -> Optional[ldap3.Tls]:
        if self.config.encryption == "plain":
            return None
        options = self.config.tls
        floor = [getattr(ssl, name) for name in _TLS_FLOORS.get(options.ssl_version or "", ())]
        return ldap3.Tls(validate=ssl.CERT_REQUIRED if options.verify else ssl.CERT_NONE, ssl_options=floor,
                         ca_certs_file=options.ca_file, ca_certs_path=options.ca_path,
                         local_certificate_file=options.cert_file, local_private_key_file=options.key_file,
                         ciphers=options.ciphers)

    @staticmethod
    def _check_result(connection) -> None:
        """AuthUnavailable when the last answer says the directory cannot serve now."""
        if connection.result and connection.result.get("result") in UNAVAILABLE_RESULTS:
            raise AuthUnavailable(f"the LDAP directory is unavailable: {connection.result.get('description')}")
