"""The storage interface of the control plane and its two implementations.

``base`` defines the small interface (in the spirit of kine's), ``memory`` an in-process
implementation for unit tests and the storage contract suite, ``etcd`` the real one on etcd through
aetcd. The API server depends only on ``base``.
"""

from agents.machinery.store.base import KeyValue, RangeResult, Store, WatchEvent, prefix_end

__all__ = ["KeyValue", "RangeResult", "Store", "WatchEvent", "prefix_end"]
