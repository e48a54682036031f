"""The shrinker-policy registry: find a policy by name, ours and third parties' alike.

Policies are distributions that declare an entry point in the group
``zspool.shrinker_policies``::

    [project.entry-points."zspool.shrinker_policies"]
    my-policy = "my_package:MyPolicy"      # a class or any factory: factory(**options) -> policy

``load_policy("my-policy", **options)`` calls that factory. Names registered in-process with
:func:`register_policy` win over entry points (for tests and embedding).

Entry points are code: installing a distribution that declares one is trusting it. Set
``ZSPOOL_DISABLE_PLUGIN_AUTOLOAD=1`` to ignore entry points entirely; then only names given to
:func:`register_policy` load.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Final

from zspool.shrinker_policy import ShrinkerPolicy

__all__ = [
    "ENTRY_POINT_GROUP",
    "AUTOLOAD_ENV",
    "register_policy",
    "load_policy",
    "available_policies",
    "PolicyNotFound",
]

ENTRY_POINT_GROUP: Final = "zspool.shrinker_policies"
AUTOLOAD_ENV: Final = "ZSPOOL_DISABLE_PLUGIN_AUTOLOAD"

PolicyFactory = Callable[..., Any]

_registered: dict[str, PolicyFactory] = {}
_lock = threading.Lock()


class PolicyNotFound(LookupError):
    """No policy of that name is registered or installed."""


def _autoload_enabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def _entry_points() -> dict[str, EntryPoint]:
    if not _autoload_enabled():
        return {}
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def register_policy(name: str, factory: PolicyFactory, *, replace: bool = False) -> None:
    """Make ``factory(**options)`` loadable as ``name``. Raises ``ValueError`` if the name is
    taken in-process, unless ``replace=True``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"policy name must be a non-empty str, not {name!r}")
    if not callable(factory):
        raise TypeError(f"policy factory for {name!r} must be callable, not {type(factory).__name__}")
    with _lock:
        if name in _registered and not replace:
            raise ValueError(f"a policy named {name!r} is already registered; pass replace=True to override it")
        _registered[name] = factory


def unregister_policy(name: str) -> None:
    """Forget an in-process registration (entry points are unaffected)."""
    with _lock:
        _registered.pop(name, None)


def available_policies() -> dict[str, str]:
    """Every loadable policy name, with where it comes from (``"registered"`` or the
    distribution and object of its entry point)."""
    names = {name: f"{ep.dist.name if ep.dist else '?'}: {ep.value}" for name, ep in _entry_points().items()}
    with _lock:
        names.update(dict.fromkeys(_registered, "registered"))
    return dict(sorted(names.items()))


def load_policy(name: str, **options: Any) -> ShrinkerPolicy:
    """Build the policy called ``name`` with ``options``.

    Raises :class:`PolicyNotFound` (naming the installed policies) when there is none, and
    ``ImportError`` (naming the distribution) when its entry point fails to import. The
    result is checked against :class:`zspool.shrinker_policy.ShrinkerPolicy`.
    """
    with _lock:
        factory = _registered.get(name)
    if factory is None:
        ep = _entry_points().get(name)
        if ep is None:
            installed = ", ".join(available_policies()) or "none"
            hint = "" if _autoload_enabled() else f" ({AUTOLOAD_ENV} is set, so entry points are ignored)"
            raise PolicyNotFound(
                f"no shrinker policy named {name!r}{hint}; installed: {installed}. "
                f"The shipped ones install with: pip install ./plugins/{name}"
            )
        try:
            factory = ep.load()
        except Exception as exc:
            dist = ep.dist.name if ep.dist else "an unknown distribution"
            raise ImportError(f"shrinker policy {name!r} from {dist} ({ep.value}) failed to import: {exc}") from exc
    policy = factory(**options)
    if not isinstance(policy, ShrinkerPolicy):
        raise TypeError(f"policy {name!r} built a {type(policy).__name__}, which lacks count_objects/scan_objects")
    return policy
