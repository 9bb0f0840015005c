"""kubelab's host side, as packages by concern.

- ``cli``: the ``kubelab`` command (parse, print, call a driver).
- ``lab``: the lab model: spec, paths, PKI, kubeconfigs, rendering, the component -> unit table.
- ``drivers``: the Driver protocol and one package per driver (``local``: processes on this host;
  ``libvirt``: virtual machines installed by Ansible).
- ``artefacts``: what labs are made from: the guest image, the built-in container images, OCI
  archives, the image registry.
- ``faults``: breaking a lab on purpose (a pure plan and an executor over the Driver protocol).
- ``system``: this machine: Debian packages it needs, processes it runs, waiting with deadlines.

Test and benchmark tooling lives apart, in ``kubelab_testing``; nothing here imports it.
"""
