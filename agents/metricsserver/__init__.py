"""The cluster's resource metrics add-on (metrics-server): the metrics.k8s.io API, for ``kubectl top``
and the HorizontalPodAutoscaler, from the kubelets' ``/metrics/resource``.

It runs as a Deployment in ``kube-system`` behind the ``metrics-server`` Service (addons/metrics-server/),
and the API server's aggregation layer sends it ``/apis/metrics.k8s.io/v1beta1/...`` through the
``v1beta1.metrics.k8s.io`` APIService. :mod:`~agents.metricsserver.points` reads a kubelet's answer,
:mod:`~agents.metricsserver.storage` keeps the last two points of every series and turns them into
rates, :mod:`~agents.metricsserver.apiobjects` writes kube's NodeMetrics and PodMetrics,
:mod:`~agents.metricsserver.auth` decides who asks (front proxy or bearer token) and
:mod:`~agents.metricsserver.server` wires it all behind HTTPS.
"""
