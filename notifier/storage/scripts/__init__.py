"""The Lua scripts behind NotificationStore and RateLimiter, read once from the ``.lua`` files here.

Each store script is one atomic status change. Every key a script touches reaches it in KEYS
(Redis's rule, and the shape a Redis Cluster needs): the layout shared by the store's scripts is
:meth:`notifier.storage.keys.Keys.script_keys`, followed by each script's own keys, which its
file's header names. ``prelude.lua`` holds the helpers they share and is prepended to each.
"""

from __future__ import annotations

from importlib.resources import files

from notifier.storage.records import STATUSES

__all__ = [
    "ACCEPT",
    "CLEANUP",
    "CREATE_AND_CLAIM",
    "DISPATCH_CONFIRM",
    "DISPATCH_DUE",
    "FIND_STUCK",
    "RATE_LIMIT",
    "TRANSITION",
]


def _read(name: str) -> str:
    return files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _lua_string(text: str) -> str:
    if not text.isidentifier():
        raise ValueError(f"not a plain name: {text!r}")
    return f"'{text}'"


# The status list comes from Python's definition, so the two cannot drift apart.
_PRELUDE = (
    f"local STATUSES = {{{', '.join(_lua_string(status) for status in STATUSES)}}}\n"
    + _read("prelude")
)


def _store_script(name: str) -> str:
    return f"{_PRELUDE}\n-- {name}.lua\n{_read(name)}"


ACCEPT = _store_script("accept")
TRANSITION = _store_script("transition")
CREATE_AND_CLAIM = _store_script("create_and_claim")
DISPATCH_DUE = _store_script("dispatch_due")
DISPATCH_CONFIRM = _store_script("dispatch_confirm")
CLEANUP = _store_script("cleanup")
FIND_STUCK = _store_script("find_stuck")
#: Stands alone: the bucket key is its only key.
RATE_LIMIT = _read("rate_limit")
