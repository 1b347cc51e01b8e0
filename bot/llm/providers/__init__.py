"""One module per provider wire format; all share `base.Provider`."""
from .base import Completion, Message, Provider, Request

__all__ = ["Completion", "Message", "Provider", "Request"]
