"""Shared live state on Redis (`REDIS_URL`, redis-py's asyncio client): per-customer rate
limits and budget spend and alerts, one for every process. When Redis is lost, callers
fall back to per-process state (one loud log line) and resume when it answers again."""
