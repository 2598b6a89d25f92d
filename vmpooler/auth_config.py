"""The ``:auth:`` section: which store checks passwords, and the ``:ldap:`` directory's settings.

The format is the original's: ``provider: users | ldap | dummy``; for LDAP an ``:ldap:`` mapping
with ``host``, ``port``, ``base``, ``user_object``, ``encryption`` and ``service_account_hash``.
The original is Ruby, so files spell keys and values as symbols too (``:method: :start_tls``):
a leading colon is ignored on every key and on the encryption method. Problems are collected
(each names its key) like the rest of the configuration.
"""
from __future__ import annotations

import dataclasses
import os
import ssl
from typing import Mapping, Optional

from vmpooler.settings import did_you_mean

AUTH_PROVIDERS = ("users", "ldap", "dummy")
ENCRYPTION_METHODS = ("start_tls", "simple_tls", "plain")
LDAP_KEYS = {"host", "port", "base", "user_object", "encryption", "service_account_hash", "connect_timeout",
             "receive_timeout"}
ENCRYPTION_KEYS = {"method", "tls_options"}
TLS_KEYS = {"ssl_version", "verify_mode", "ca_file", "ca_path", "cert_file", "key_file", "ciphers"}
SERVICE_ACCOUNT_KEYS = {"user_dn", "password"}
SSL_VERSIONS = ("TLSv1", "TLSv1_1", "TLSv1_2", "TLSv1_3")
# OpenSSL::SSL::VERIFY_NONE is 0 and VERIFY_PEER is 1 in the original's Ruby.
_VERIFY_MODES = {"0": False, "none": False, "verify_none": False, "1": True, "peer": True, "verify_peer": True}
# The original's environment overrides of :ldap: keys.
LDAP_ENVIRONMENT = {"LDAP_HOST": "host", "LDAP_PORT": "port", "LDAP_BASE": "base",
                    "LDAP_USER_OBJECT": "user_object"}


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    """How the TLS session is set up (``encryption: tls_options``)."""

    #: the oldest protocol accepted (the newest both sides speak is negotiated)
    ssl_version: Optional[str] = None
    verify: bool = True
    ca_file: Optional[str] = None
    ca_path: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    ciphers: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class LdapConfig:
    host: str
    port: int = 389
    bases: tuple = ()
    user_objects: tuple = ()
    encryption: str = "start_tls"
    tls: TlsOptions = TlsOptions()
    service_dn: Optional[str] = None
    service_password: Optional[str] = dataclasses.field(default=None, repr=False)
    connect_timeout: float = 5.0
    receive_timeout: int = 10


def parse_auth(section, environ: Mapping[str, str], problems: list) -> Optional[dict]:
    """``{"provider": ..., "users": {...}}`` or ``{"provider": "ldap", "ldap": LdapConfig}``; None
    when authentication is not configured."""
    if not section and not environ.get("AUTH_PROVIDER"):
        return None
    if section is not None and not isinstance(section, dict):
        problems.append(f"auth: must be a mapping, not {type(section).__name__}")
        return None
    auth = {_key(key): value for key, value in (section or {}).items()}
    if environ.get("AUTH_PROVIDER"):
        auth["provider"] = environ["AUTH_PROVIDER"]
    provider = auth.get("provider")
    if provider not in AUTH_PROVIDERS:
        problems.append(f"auth.provider: {provider!r} is not supported (supported: {', '.join(AUTH_PROVIDERS)})")
    elif provider == "dummy" and not environ.get("VMPOOLER_DEBUG"):
        problems.append("auth.provider: 'dummy' accepts any password and is refused unless VMPOOLER_DEBUG is set")
    elif provider == "users":
        _check_users(auth.get("users"), problems)
    elif provider == "ldap":
        auth["ldap"] = parse_ldap(auth.get("ldap"), environ, problems)
    if auth.get("admins") is not None:
        auth["admins"] = _admins(auth["admins"], problems)
    return auth


def _admins(value, problems: list) -> tuple:
    """``admins``: the users whose tokens may change the pool configuration at run time (a list,
    or one name)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, (str, int)) for name in names):
        problems.append(f"auth.admins: must be a list of strings, not {value!r}")
        return ()
    if not names:
        problems.append("auth.admins: must name at least one user (leave it out to let every token in)")
    return tuple(str(name) for name in names)


def _check_users(users, problems: list) -> None:
    if users is not None and not isinstance(users, dict):
        problems.append("auth.users: must be a mapping of user: '<bcrypt hash>'")
        return
    if not users:
        problems.append("auth.users: the users provider needs at least one user: '<bcrypt hash>'")
    for user, digest in (users or {}).items():
        if not isinstance(digest, str) or not digest.startswith(("$2a$", "$2b$", "$2y$")):
            problems.append(f"auth.users.{user}: must be a bcrypt hash (see 'vmpooler passwd')")


def parse_ldap(section, environ: Mapping[str, str], problems: list) -> Optional[LdapConfig]:
    if section is not None and not isinstance(section, dict):
        problems.append(f"auth.ldap: must be a mapping, not {type(section).__name__}")
        return None
    raw = _section(section, "auth.ldap", LDAP_KEYS, problems)
    for variable, key in LDAP_ENVIRONMENT.items():
        if environ.get(variable):
            raw[key] = environ[variable]
    before = len(problems)
    host = raw.get("host")
    if not isinstance(host, str) or not host.strip() or "://" in host or "/" in host:
        problems.append(f"auth.ldap.host: required, the directory's host name (without ldap://), not {host!r}")
    port = _number(raw.get("port", 389), "auth.ldap.port", int, 1, 65535, problems)
    bases = _names(raw.get("base"), "auth.ldap.base", problems)
    user_objects = _names(raw.get("user_object"), "auth.ldap.user_object", problems)
    method, tls = _encryption(raw.get("encryption"), problems)
    service_dn, service_password = _service_account(raw.get("service_account_hash"), problems)
    connect_timeout = _number(raw.get("connect_timeout", 5), "auth.ldap.connect_timeout", float, 0.1, 300, problems)
    # whole seconds: ldap3 sets the socket's SO_RCVTIMEO from an integer
    receive_timeout = _number(raw.get("receive_timeout", 10), "auth.ldap.receive_timeout", int, 1, 300,
                              problems)
    if len(problems) > before:
        return None
    return LdapConfig(host=str(host).strip(), port=port, bases=bases, user_objects=user_objects, encryption=method,
                      tls=tls, service_dn=service_dn, service_password=service_password,
                      connect_timeout=connect_timeout, receive_timeout=receive_timeout)


def _key(key) -> str:
    """A key as the original may spell it: ``:method`` and ``method`` are one key."""
    return str(key).strip(":")


def _section(value, where: str, known: set, problems: list) -> dict:
    """The mapping at ``where`` with its keys' colons stripped; unknown keys are problems."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping, not {type(value).__name__}")
        return {}
    section = {_key(key): item for key, item in value.items()}
    for key in section:
        if key not in known:
            problems.append(f"{where}.{key}: not a known key{did_you_mean(key, known)} "
                            f"(known: {', '.join(sorted(known))})")
    return section


def _number(value, where: str, kind, low, high, problems: list):
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        problems.append(f"{where}: must be a number from {low} to {high}, not {value!r}")
        return None
    if not low <= number <= high:
        problems.append(f"{where}: must be from {low} to {high}, not {value!r}")
    return number


def _names(value, where: str, problems: list) -> tuple:
    """A string (split on whitespace, as the original does) or a list of strings; required."""
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
        names = [item.strip() for item in value]
    else:
        names = []
    if not names:
        problems.append(f"{where}: required, a string or a list of strings, not {value!r}")
    return tuple(names)


def _encryption(value, problems: list) -> tuple:
    """(method, TlsOptions). Absent: start_tls, as the original."""
    section = _section(value, "auth.ldap.encryption", ENCRYPTION_KEYS, problems)
    method = str(section.get("method", "start_tls")).lstrip(":")
    if method not in ENCRYPTION_METHODS:
        problems.append(f"auth.ldap.encryption.method: must be one of {', '.join(ENCRYPTION_METHODS)}, "
                        f"not {section.get('method')!r}")
    options = _section(section.get("tls_options"), "auth.ldap.encryption.tls_options", TLS_KEYS, problems)
    where = "auth.ldap.encryption.tls_options"
    for key, item in options.items():
        if key != "verify_mode" and key in TLS_KEYS and not isinstance(item, str):
            problems.append(f"{where}.{key}: must be a string, not {item!r}")
    version = options.get("ssl_version")
    if version is not None and str(version).lstrip(":") not in SSL_VERSIONS:
        problems.append(f"{where}.ssl_version: must be one of {', '.join(SSL_VERSIONS)}, not {version!r}")
    verify = _VERIFY_MODES.get(str(options.get("verify_mode", "peer")).lstrip(":").lower()
                               .replace("openssl::ssl::", ""))
    if verify is None:
        problems.append(f"{where}.verify_mode: must be peer (1) or none (0), not {options['verify_mode']!r}")
    _check_files(options, where, problems)
    fields = {key: options.get(key) for key in ("ca_file", "ca_path", "cert_file", "key_file", "ciphers")}
    return method, TlsOptions(ssl_version=str(version).lstrip(":") if version else None, verify=bool(verify),
                              **fields)


def _check_files(options: dict, where: str, problems: list) -> None:
    """The TLS files exist and the cipher list means something to OpenSSL (a login would fail, or
    silently use the defaults, otherwise)."""
    for key, exists in (("ca_file", os.path.isfile), ("cert_file", os.path.isfile), ("key_file", os.path.isfile),
                        ("ca_path", os.path.isdir)):
        if isinstance(options.get(key), str) and not exists(options[key]):
            problems.append(f"{where}.{key}: {options[key]!r} does not exist")
    if options.get("key_file") and not options.get("cert_file"):
        problems.append(f"{where}.key_file: given without cert_file")
    if isinstance(options.get("ciphers"), str):
        try:
            ssl.create_default_context().set_ciphers(options["ciphers"])
        except ssl.SSLError:
            problems.append(f"{where}.ciphers: {options['ciphers']!r} selects no cipher OpenSSL knows")


def _service_account(value, problems: list) -> tuple:
    """(user_dn, password) of ``service_account_hash``, or (None, None)."""
    if value is None:
        return None, None
    section = _section(value, "auth.ldap.service_account_hash", SERVICE_ACCOUNT_KEYS, problems)
    for key in sorted(SERVICE_ACCOUNT_KEYS):
        if not isinstance(section.get(key), str) or not section.get(key):
            problems.append(f"auth.ldap.service_account_hash.{key}: required, a non-empty string")
    return section.get("user_dn"), section.get("password")
