"""The time-series logger: polling, storage (PostgreSQL, SQLite), spool, queries.

Modules: queries (what a query is), store (the interface) with postgres and
sqlite, spool and writer (getting readings to the database, or to disk while
it is away), service and api (the Tornado service), command (the CLI),
analysis (a function for scripts), settings (the ``[logger]`` config section).
"""
