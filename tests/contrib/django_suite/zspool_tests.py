"""Django's own cache suite against zspool.contrib.django.ZspoolCache (the adapter).

tests/contrib/test_django.py copies this file into the ``cache`` test app of the Django
sdist (as ``cache/zspool_tests.py``) and runs it with Django's ``runtests.py``. It runs
every test of ``BaseCacheTests`` (the suite each built-in backend runs) and the
``LocMemCacheTests`` that are not about LocMem's internals; each skip below says why.
"""

from django.core.cache import cache, caches
from django.test import TestCase, override_settings

from zspool.contrib.django import _EXPIRY

from .tests import BaseCacheTests, LocMemCacheTests, caches_setting_for_tests

BACKEND = "zspool.contrib.django.ZspoolCache"

# Test name -> why it does not apply to this backend. Printed by Django's runner.
SKIPS = {
    "test_cull": "counts entries (MAX_ENTRIES=30); zspool budgets bytes (OPTIONS maxbytes), as memcached and Redis ignore MAX_ENTRIES",
    "test_zero_cull": "counts entries (CULL_FREQUENCY=0, MAX_ENTRIES=30); zspool budgets bytes",
    "test_cull_delete_when_store_empty": "sets the count budget _max_entries=-1; zspool budgets bytes",
    "test_lru_get": "LocMem's count budget (MAX_ENTRIES=9); zspool evicts by bytes with SIEVE",
    "test_lru_set": "LocMem's count budget (MAX_ENTRIES=9); zspool evicts by bytes with SIEVE",
    "test_lru_incr": "LocMem's count budget (MAX_ENTRIES=9); zspool evicts by bytes with SIEVE",
    "test_incr_decr_timeout": "reads LocMem's _expire_info; test_incr_decr_keep_remaining_ttl below checks the same through zspool's entry header",
}


def _skipped(name, reason):
    def test(self):
        self.skipTest(reason)

    test.__name__ = name
    return test


def _unwrapped(test):
    """A LocMem test without its LocMem-specific @override_settings."""
    return getattr(test, "__wrapped__", test)


@override_settings(CACHES=caches_setting_for_tests(BACKEND=BACKEND))
class ZspoolCacheTests(BaseCacheTests, TestCase):
    # The LocMem tests that are about the backend, not LocMem's internals.
    test_locking_on_pickle = LocMemCacheTests.test_locking_on_pickle

    @override_settings(
        CACHES={
            "default": {"BACKEND": BACKEND},
            "other": {"BACKEND": BACKEND, "LOCATION": "other"},
        }
    )
    def test_multiple_caches(self):
        _unwrapped(LocMemCacheTests.test_multiple_caches)(self)

    def test_incr_decr_keep_remaining_ttl(self):
        """incr/decr keep the expiry (LocMem's test_incr_decr_timeout, through our header)."""
        key = "value"
        stored_key = cache.make_key(key)

        def expiry():
            return _EXPIRY.unpack_from(cache._cache[stored_key])[0]

        cache.set(key, 1, timeout=cache.default_timeout * 10)
        expire = expiry()
        self.assertEqual(cache.incr(key), 2)
        self.assertEqual(expire, expiry())
        self.assertEqual(cache.decr(key), 1)
        self.assertEqual(expire, expiry())

    def test_same_location_shares_store(self):
        """Caches with one LOCATION share one store (the suite relies on it for prefix/v2)."""
        self.assertIs(caches["default"]._cache, caches["v2"]._cache)


for _name, _reason in SKIPS.items():
    setattr(ZspoolCacheTests, _name, _skipped(_name, _reason))
