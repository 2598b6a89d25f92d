"""RFC 2136 dynamic updates with dnspython: one signed UPDATE over TCP per record change.

A VM's record is replaced, not added to (the UPDATE deletes the name's A, or AAAA, records and
adds the new one in one message, which the server applies atomically), so registering twice or
after an address change leaves exactly one record. Removing deletes the name's A and AAAA
records and nothing else at that name.
"""
from __future__ import annotations

import socket

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update

from vmpooler.dns.base import DnsError, DnsPlugin, PermanentDnsError

#: answers that say the update can never succeed as configured (wrong key, zone or policy)
PERMANENT_RCODES = {dns.rcode.NOTAUTH, dns.rcode.REFUSED, dns.rcode.NOTZONE, dns.rcode.FORMERR}


class Rfc2136Plugin(DnsPlugin):
    def __init__(self, config):
        super().__init__(config)
        options = config.options
        self.options = options
        self.zone = dns.name.from_text(options.zone)
        self.domain = dns.name.from_text(options.domain)
        self.keyring = None
        if options.tsig_key_name:
            key_name = dns.name.from_text(options.tsig_key_name)
            self.keyring = {key_name: dns.tsig.Key(key_name, options.tsig_secret, options.tsig_algorithm)}

    def fqdn(self, hostname: str) -> dns.name.Name:
        return dns.name.from_text(hostname, origin=self.domain)

    def create_or_replace_record(self, hostname: str, ip: str) -> None:
        update = self._update()
        name, rdtype = self.fqdn(hostname), "AAAA" if ":" in ip else "A"
        update.delete(name, "AAAA" if rdtype == "A" else "A")
        update.replace(name, self.options.ttl, rdtype, ip)
        self._send(update, f"adding {name.to_text(omit_final_dot=True)} {rdtype} {ip}")

    def delete_record(self, hostname: str) -> None:
        update = self._update()
        name = self.fqdn(hostname)
        update.delete(name, "A")
        update.delete(name, "AAAA")
        self._send(update, f"removing {name.to_text(omit_final_dot=True)}")

    def _update(self) -> dns.update.UpdateMessage:
        if self.keyring is None:
            return dns.update.UpdateMessage(self.zone)
        return dns.update.UpdateMessage(self.zone, keyring=self.keyring)

    def _send(self, update, what: str) -> None:
        where = f"{self.options.server}:{self.options.port}"
        try:
            response = dns.query.tcp(update, self._address(), timeout=self.options.timeout, port=self.options.port)
        except (dns.tsig.PeerError, dns.tsig.BadSignature) as error:
            raise PermanentDnsError(f"DNS {self.name}: {what}: {where} refused the TSIG key "
                                    f"{self.options.tsig_key_name}: {error}") from None
        except dns.exception.Timeout:
            raise DnsError(f"DNS {self.name}: {what}: {where} did not answer within "
                           f"{self.options.timeout:g}s") from None
        except (OSError, EOFError, dns.exception.DNSException) as error:
            raise DnsError(f"DNS {self.name}: {what}: {where}: {error or type(error).__name__}") from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            failure = PermanentDnsError if rcode in PERMANENT_RCODES else DnsError
            raise failure(f"DNS {self.name}: {what}: {where} answered {dns.rcode.to_text(rcode)}")

    def _address(self) -> str:
        """The server's address (dnspython sends only to addresses): resolved at each update, so
        a server that moves is followed."""
        try:
            return str(socket.getaddrinfo(self.options.server, self.options.port, type=socket.SOCK_STREAM)[0][4][0])
        except OSError as error:
            raise DnsError(f"DNS {self.name}: cannot resolve the server {self.options.server}: {error}") from None


PLUGIN = Rfc2136Plugin
