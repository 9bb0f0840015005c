"""The API server's storage: a small interface and its two implementations.

Only the API server talks to etcd; every other component reads and writes through the API. So the
store lives here, not in ``agents.machinery``. ``base`` defines the small interface (in the spirit
of kine's), ``errors`` what it raises, ``memory`` an in-process implementation for unit tests and
the storage contract suite, ``etcd`` the real one on etcd through aetcd. The rest of the API server
depends only on ``base`` and ``errors``; ``server`` picks the implementation.
"""

from agents.apiserver.storage.base import KeyValue, RangeResult, Store, WatchEvent, prefix_end

__all__ = ["KeyValue", "RangeResult", "Store", "WatchEvent", "prefix_end"]
