"""Test and benchmark tooling for kubelab labs, one package for every tier (unit, integration, e2e) and the
benchmarks, and for anyone's own suites against a lab. The product (``provisioner``, ``agents``) never
imports it; it uses the product only through the ``kubelab`` command and a few public modules.

- ``lab``: a lab by name and home (its files, nodes, ``cli()``, ``ssh()``), made for a session and removed
- ``kubectl``: the real kubectl bound to a lab, and ``kubectl get -w`` followed event by event
- ``waiting``: ``eventually`` (and ``until`` in asyncio): a condition awaited with a deadline
- ``commands``: one result and one deadline for every program a test runs; stopping what it started
- ``faults``: ``kubelab fault`` from a test; ``loadprobe``: requests at a Service during a fault
- ``drills``: the fault drills the e2e tier asserts on and the benchmark prints
- ``plugin``: the pytest fixtures (``kubelab_lab``, ``kubelab_kubectl``, ...)
"""
