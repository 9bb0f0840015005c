"""The web dashboard add-on: a page that draws the cluster's architecture at work (the control plane,
every node with its pods, live), the objects a user works with, and one object's trace through the
components.

It runs as a Deployment in ``kube-system`` behind the ``dashboard`` Service (addons/dashboard/) and is
reached through the API server's service proxy. It holds no rights of its own that matter: every call
the page makes goes to the API server with the bearer token the user logged in with
(:mod:`~agents.dashboard.session`), so the user's RBAC decides what the page shows.
:mod:`~agents.dashboard.overview` builds the architecture map from listed objects,
:mod:`~agents.dashboard.timeline` lays out a trace, :mod:`~agents.dashboard.server` serves the page
(``static/``) and the small backend.
"""
