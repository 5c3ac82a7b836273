"""The benchmark's own databases on the PostgreSQL server that DATABASE_URL points at.

The database DATABASE_URL names is never connected to: database administration (drop, create, clone) goes
through the server's maintenance database, and the benchmark's work goes through Django's default connection
pointed at a benchmark database for a while (``pointed_at``), as Django's test runner points it at the test
database. Workers get the benchmark database's own DATABASE_URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import sql

MAINTENANCE_DATABASES = ("postgres", "template1")
RESERVED = {"postgres", "template0", "template1"}


class BenchDatabaseError(RuntimeError):
    pass


def settings_dict() -> dict[str, Any]:
    return connections[DEFAULT_DB_ALIAS].settings_dict


def is_postgresql() -> bool:
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


def configured_name() -> str:
    """The name of the database DATABASE_URL names (the one the benchmark must leave alone)."""
    return settings_dict()["NAME"]


def check_name(name: str, *, protected: str) -> None:
    """Refuse names the benchmark must not drop: the configured database, PostgreSQL's own, and any name
    that does not say it is a benchmark's (a typo must not drop a real database)."""
    if name == protected:
        raise BenchDatabaseError(
            f"'{name}' is the database DATABASE_URL names: the benchmark drops and recreates its databases, "
            "so it never works in that one. Choose another --database."
        )
    if name in RESERVED:
        raise BenchDatabaseError(f"'{name}' is one of PostgreSQL's own databases.")
    if "bench" not in name or len(name) > 55:
        raise BenchDatabaseError(
            f"'{name}': a benchmark database name must contain 'bench' (so a typo cannot drop a real "
            "database) and be at most 55 characters (its clones add a suffix)."
        )


def _libpq_options() -> dict[str, str]:
    """The connection OPTIONS that are libpq parameters (sslmode, ...), not Django's own (pool, ...)."""
    known = {d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults()}
    options = settings_dict().get("OPTIONS") or {}
    return {k: str(v) for k, v in options.items() if k in known and isinstance(v, str | int)}


def _connect_kwargs(dbname: str) -> dict[str, Any]:
    db = settings_dict()
    kwargs: dict[str, Any] = {"dbname": dbname, "autocommit": True}
    for key, name in (("HOST", "host"), ("PORT", "port"), ("USER", "user"), ("PASSWORD", "password")):
        if db.get(key):
            kwargs[name] = str(db[key])
    return kwargs | _libpq_options()


@contextmanager
def maintenance() -> Iterator[psycopg.Connection]:
    """An autocommit connection to the server's maintenance database (DROP/CREATE DATABASE need one)."""
    error: Exception | None = None
    for name in MAINTENANCE_DATABASES:
        try:
            conn = psycopg.connect(**({"connect_timeout": "10"} | _connect_kwargs(name)))
        except psycopg.OperationalError as exc:
            error = exc
            continue
        try:
            yield conn
        finally:
            conn.close()
        return
    raise BenchDatabaseError(f"Cannot connect to the PostgreSQL server: {error}")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def exists(name: str) -> bool:
    with maintenance() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def drop(name: str) -> None:
    with maintenance() as conn:
        try:
            conn.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        except psycopg.Error as exc:
            raise BenchDatabaseError(f"Cannot drop database {name}: {exc}") from exc


def create(name: str, *, template: str | None = None) -> None:
    """Create ``name`` (dropping it first), empty or as a copy of ``template`` (a block copy: fast,
    statistics included; nobody may be connected to the template meanwhile)."""
    drop(name)
    with maintenance() as conn:
        statement = f"CREATE DATABASE {_ident(name)}"
        if template:
            statement += f" TEMPLATE {_ident(template)}"
        try:
            conn.execute(statement)
        except psycopg.Error as exc:  # e.g. someone is connected to the template
            raise BenchDatabaseError(f"Cannot create database {name}: {exc}") from exc


def comment_of(name: str) -> str:
    with maintenance() as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
    return (row[0] or "") if row else ""


def set_comment(name: str, comment: str) -> None:
    with maintenance() as conn:
        conn.execute(f"COMMENT ON DATABASE {_ident(name)} IS {sql.quote(comment)}")


def server_facts() -> dict[str, str]:
    """The PostgreSQL version and the settings that shape the figures."""
    with maintenance() as conn:
        facts = {"version": conn.execute("SHOW server_version").fetchone()[0]}
        for setting in ("shared_buffers", "work_mem", "synchronous_commit", "fsync", "max_connections"):
            facts[setting] = conn.execute(f"SHOW {setting}").fetchone()[0]
    return facts


def database_url(name: str) -> str:
    """A DATABASE_URL for ``name`` with the configured server, user and options (for the workers)."""
    db = settings_dict()
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(str(db["PASSWORD"]), safe="")
    host = quote(db.get("HOST") or "", safe="")  # a socket folder travels percent-encoded
    port = db.get("PORT") or 5432
    options = _libpq_options()
    query = f"?{urlencode(options)}" if options else ""
    return f"postgres://{auth}@{host}:{port}/{quote(name, safe='')}{query}"


@contextmanager
def pointed_at(name: str) -> Iterator[None]:
    """Point Django's default connection at database ``name`` for the block (closed on both ends, so no
    connection to either database stays open)."""
    conn = connections[DEFAULT_DB_ALIAS]
    original = conn.settings_dict["NAME"]
    conn.close()
    conn.settings_dict["NAME"] = name
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict["NAME"] = original
