"""The cloud-controller-manager: the control loops that ask the lab's cloud (libvirt, through
``provisioner.cloud``'s API) about machines, as kube's cloud-controller-manager asks a cloud provider.

It is its own program (``python -m agents.controllers.cloud``, leader-elected on the Lease
``cloud-controller-manager``) sharing the controller-manager's machinery (``agents.controllers.base``):

- ``node`` (kube's cloud node controller): a Node registered by a kubelet started with
  ``--cloud-provider=external`` carries the ``node.cloudprovider.kubernetes.io/uninitialized`` taint;
  the controller sets its ``spec.providerID``, addresses, region, zone and instance-type labels from
  the cloud, then removes the taint;
- ``nodelifecycle`` (kube's cloud node lifecycle controller): a Node that is not Ready and whose
  machine the cloud no longer has is deleted; one whose machine is stopped gets the
  ``node.cloudprovider.kubernetes.io/shutdown`` taint, removed again when it is back.
- ``service`` (kube's service controller): a cloud load balancer for each ``type: LoadBalancer``
  Service, its address in the Service's status, taken away (behind the
  ``service.kubernetes.io/load-balancer-cleanup`` finalizer) when the Service goes.
- ``route`` (kube's route controller): each Node's podCIDR routed to its machine by the cloud's
  router (routes named ``<cluster-name>-<node UID>``), the Node's ``NetworkUnavailable`` condition
  saying whether it is; it runs only with ``--configure-cloud-routes``, ``--allocate-node-cidrs`` and
  a ``--cluster-cidr``.

``provider`` is the cloud's client. Each controller decides in a pure ``plan``.
"""
