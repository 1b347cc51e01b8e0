"""The server implementations of the durable stores, on PostgreSQL (`DATABASE_URL`),
through asyncpg's connection pool."""
