"""``dns_class: rfc2136``: A records kept by RFC 2136 dynamic updates signed with TSIG (BIND 9,
Knot, PowerDNS, Windows DNS with a TSIG-capable front, ...)."""
