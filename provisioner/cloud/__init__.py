"""The lab's cloud: what a cloud provider's API gives a cloud-controller-manager, backed by libvirt.

Kubernetes leaves machines, load balancers and routes to the cloud-controller-manager, which asks the
cloud's API about them. In the VM lab the cloud is libvirt on the host: ``instances`` says what the
lab's domains are in a cloud's terms (provider ID ``libvirt://<domain uuid>``, state, addresses, zone,
instance type), ``loadbalancers`` and ``routes`` decide the cloud's load balancers and the pod routes
its router (the lab network's gateway) carries, and ``server`` serves that over HTTPS with a token of
its own to the lab network only. Everything that decides is pure (``instances``, ``loadbalancers``,
``routes``); the server, the libvirt backend and the executors (``haproxy``, ``router``) only carry it.
"""
