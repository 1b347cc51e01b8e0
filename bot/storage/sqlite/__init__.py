"""The embedded implementations: SQLite files under TIERBOT_DATA_DIR, written through one
writer process per bot process (`writer.py`). Used when neither DATABASE_URL nor
REDIS_URL is set, so a bare machine needs no server."""
