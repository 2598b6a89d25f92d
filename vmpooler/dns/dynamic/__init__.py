"""``dns_class: dynamic-dns``: the network's dynamic DNS keeps the records; vmpooler only appends
the domain to hostnames."""
