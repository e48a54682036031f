"""Adapters that plug :class:`zspool.Cache` in where Python services already cache.

Each module imports its framework, so import the one you use (after installing its extra):

- :mod:`zspool.contrib.django`: ``ZspoolCache``, a Django cache backend (``zspool[django]``).
- :mod:`zspool.contrib.cachelib`: ``ZspoolCache``, a cachelib backend for Flask-Caching
  (``zspool[flask]``).
- :mod:`zspool.contrib.valkey` / :mod:`zspool.contrib.redis`: ``ClientCache``, a near
  cache for valkey-py's and redis-py's server-assisted client-side caching
  (``zspool[valkey]``, ``zspool[redis]``).
- :mod:`zspool.contrib.prometheus`: ``ZspoolCollector``, pool and cache metrics for a
  ``prometheus_client`` registry (``zspool[prometheus]``).

docs/INTEGRATIONS.md shows each in use.
"""
