"""The cluster's DNS add-on (kube-dns): Service and Pod names answered from the API through watches.

It runs as a Deployment in ``kube-system`` behind the ``kube-dns`` Service (addons/dns/), with a
ServiceAccount of its own; :mod:`agents.dns.records` is what it answers, :mod:`agents.dns.server`
how (DNS over UDP and TCP with dnslib's message format).
"""
