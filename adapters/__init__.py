"""Platform adapters and the web server that hosts them.

Each adapter knows one platform and nothing of the tiers: it turns what the platform
sends into an `Event`, and a `Reply` back into what the platform expects.
- `adapters.telegram`: customers on Telegram (webhook or polling), through python-telegram-bot;
- `adapters.server`: the aiohttp app (`tierbot serve`): webhook, Slack, JSON API, health, metrics;
- `adapters.inbox` / `adapters.outbox`: nothing received or sent is lost across restarts.
"""
