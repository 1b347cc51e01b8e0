"""tierbot: a customer-support bot that always answers.

    from bot import Event, Reply, SupportBot

    async with SupportBot.from_env() as bot:
        reply = await bot.handle(Event(platform="console", conversation_id="c1",
                                       user_id="u1", text="hi"))
"""
from .models import Attachment, Attempt, Event, Reply, StreamReset
from .pipeline import SupportBot

__all__ = ["Attachment", "Attempt", "Event", "Reply", "StreamReset", "SupportBot"]
__version__ = "0.1.0"
