"""The ingress controller add-on (ingress-nginx's work, in Python): Debian's nginx routes HTTP and
HTTPS by host and path to the ready endpoints of Services, as the Ingresses of its class say.

It runs as a Deployment in ``ingress-nginx`` behind the ``ingress-nginx-controller`` LoadBalancer
Service (addons/ingress-nginx/). :mod:`agents.ingress.classes` says which Ingresses are its own,
:mod:`agents.ingress.planner` what nginx must do for them (pure: objects in, configuration text and
TLS files out) as the values of :mod:`agents.ingress.model`, :mod:`agents.ingress.nginxconf` how that
is written in nginx's language,
:mod:`agents.ingress.nginx` applies it to the nginx master this process runs, :mod:`agents.ingress.status`
what address the Ingresses report, and :mod:`agents.ingress.controller` ties them to the API's watches.
"""
