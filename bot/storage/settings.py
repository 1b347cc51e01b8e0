"""Which storage backend this process uses, read once from the configuration.

Neither `DATABASE_URL` nor `REDIS_URL` set: embedded (SQLite under TIERBOT_DATA_DIR),
exactly as before. `DATABASE_URL` (as Heroku sets it): the ledger, conversation history
and handoffs live in PostgreSQL. `REDIS_URL`: per-customer rate limits and budget
spend are shared by every process. Each can be set without the other.

URLs hold passwords: only `masked` forms ever reach a log line or an error message,
and the password is registered for redaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..config import Config, ConfigError
from ..secrets import register_secrets

__all__ = ["StorageSettings", "ServerUrl", "mask_url", "StorageUnavailable"]

DATABASE_SCHEMES = ("postgres", "postgresql")
REDIS_SCHEMES = ("redis", "rediss")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class StorageUnavailable(RuntimeError):
    """A configured database or Redis does not answer; the message names it, masked."""


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***` (user, host, port and path kept)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:***@{hostport}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ServerUrl:
    """A validated server URL. `url` is secret; say `masked` anywhere it is shown."""

    var: str
    url: str
    scheme: str
    password: str | None

    @property
    def masked(self) -> str:
        return mask_url(self.url)

    def scrub(self, text: str) -> str:
        """An error text with this URL's password (and the URL itself) taken out."""
        text = text.replace(self.url, self.masked)
        if self.password:
            text = text.replace(self.password, "***")
        return text

    @property
    def sslmode(self) -> str | None:
        values = parse_qs(urlsplit(self.url).query).get("sslmode")
        return values[-1] if values else None


def _parse(config: Config, var: str, schemes: tuple[str, ...]) -> ServerUrl | None:
    raw = config.get(var)
    if raw is None:
        return None
    raw = raw.strip()
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ConfigError(f"{var} is not a valid URL ({mask_url(raw)}): {e}") from None
    if parts.password:
        register_secrets([parts.password, raw])
    if parts.scheme not in schemes:
        raise ConfigError(f"{var} must start with {' or '.join(s + '://' for s in schemes)}, "
                          f"got {mask_url(raw)}")
    if not parts.hostname and not parse_qs(parts.query).get("host"):
        raise ConfigError(f"{var} names no host: {mask_url(raw)}")
    url = ServerUrl(var, raw, parts.scheme, parts.password)
    if var == "DATABASE_URL" and url.sslmode is not None and url.sslmode not in SSL_MODES:
        raise ConfigError(f"DATABASE_URL: sslmode must be one of {', '.join(SSL_MODES)}, got {url.sslmode!r}")
    return url


@dataclass(frozen=True)
class StorageSettings:
    database: ServerUrl | None = None
    redis: ServerUrl | None = None

    @classmethod
    def from_config(cls, config: Config) -> "StorageSettings":
        return cls(database=_parse(config, "DATABASE_URL", DATABASE_SCHEMES),
                   redis=_parse(config, "REDIS_URL", REDIS_SCHEMES))

    @property
    def kind(self) -> str:
        """"embedded", or "server" when any server URL is set."""
        return "server" if self.database or self.redis else "embedded"

    def describe(self) -> list[str]:
        """One line per store, for `tierbot check` and the logs (passwords masked)."""
        return [
            "durable state (ledger, history, handoffs): "
            + (f"PostgreSQL {self.database.masked}" if self.database else "embedded SQLite (TIERBOT_DATA_DIR)"),
            "shared live state (rate limits, budget): "
            + (f"Redis {self.redis.masked}" if self.redis else "per process (no REDIS_URL)"),
        ]
