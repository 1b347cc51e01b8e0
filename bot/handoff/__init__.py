"""Human handoff: staff take a conversation over from the bot and hand it back.

Platform-neutral: the staff side is reached through a `StaffDesk` (the Slack adapter
implements it) and customers through `services["channels"]`. State lives in a
SQLite `HandoffStore` so an open handoff survives restarts.
"""
from .desk import StaffDesk
from .hours import StaffHours
from .service import HandoffService
from ..storage.sqlite.handoffs import Handoff, HandoffStore

__all__ = ["Handoff", "HandoffStore", "HandoffService", "StaffDesk", "StaffHours"]
