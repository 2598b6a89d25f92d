"""``dynamic-dns`` reads nothing beyond ``domain``."""
from vmpooler.dns.base import DnsSchema

SCHEMA = DnsSchema()
