"""Where tierbot keeps its state: small typed interfaces per store, and their
implementations — embedded (SQLite, the default) and server (PostgreSQL, Redis).

Nothing outside this package writes SQL or talks to Redis."""
