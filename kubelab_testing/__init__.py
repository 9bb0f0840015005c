"""Test and benchmark tooling for kubelab labs: a lab client, kubectl, waiting, load probes,
fault drills and the pytest plugin. The product never imports this package."""
