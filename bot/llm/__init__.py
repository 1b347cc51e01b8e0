"""The LLM chain tier: Groq → Gemini → Claude (configurable) with failure classification,
per-provider/model circuit breakers, one deadline, hedging, streaming and routes.

Modules, one concern each: `errors` (classification), `breaker`, `providers/*` (wire
formats), `routes` (settings: chains, models, vision), `prompt` (system prompt and
context), `chain` (the tier), `plugin` (wiring into the bot), `check` (`tierbot check`).
"""
