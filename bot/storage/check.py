"""The storage part of `tierbot check`: which backend is configured and whether each
server answers (URLs shown with their passwords masked)."""
from __future__ import annotations

from ..config import Config
from .backend import Storage

__all__ = ["check_storage"]


async def check_storage(config: Config) -> bool:
    """Print the backend and one line per server; False when a configured one does not answer."""
    storage = Storage(config, migrate=False)
    print(f"storage: {storage.kind}")
    for line in storage.settings.describe():
        print(f"  {line}")
    ok = True
    try:
        for what, where, error in await storage.check():
            if error is None:
                print(f"  {what} {where}: answers")
            else:
                ok = False
                print(f"  {what} {where}: DOES NOT ANSWER ({error})")
    finally:
        await storage.aclose()
    return ok
