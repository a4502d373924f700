"""The local supervisor: ``feedchat up`` and the embedded stores it starts.

Apart from the service runtime (:mod:`feedchat_runtime`) on purpose: a deployed service
needs none of this. ``feedchat up`` runs embedded etcd, Redis (one node or a cluster) and
PostgreSQL next to every service (:mod:`feedchat_local.cluster`); the tests start the
same embedded stores (:mod:`feedchat_local.embedded`); the ``feedchat`` command line
(:mod:`feedchat_local.cli`) adds ``up`` and ``status`` to the client's commands.
"""
