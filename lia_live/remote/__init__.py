"""Remote mode: ``lia-live serve`` animates on a GPU machine for ``lia-live --remote`` clients (docs/remote.md)."""

from .client import RemoteAnimator, RemoteSource
from .server import RemoteServer, new_token
from .session import run_remote
from .settings import RemoteConfig, ServeConfig

__all__ = ["RemoteAnimator", "RemoteConfig", "RemoteServer", "RemoteSource", "ServeConfig", "new_token",
           "run_remote"]
