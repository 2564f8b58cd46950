"""The SQLite store of ``limits.sweep``: schema, opening, claims (leases), writes and reads.

One file holds any number of experiments.  Tables::

    meta(key, value)                          schema version
    experiments(name, fn, seed, created)      an experiment is bound to one fn and root seed
    points(name, key, seq, params, status, results, seconds, finished, error)
    arrays(name, key, field, npy)             array results, .npy bytes (no pickle)
    failures(id, name, key, attempt, error, traceback, time)
    leases(name, key, owner, until)           points claimed by a running coordinator

Only coordinators write, each through one connection, one short transaction at a time
(``BEGIN IMMEDIATE``: SQLite serialises them).  Several coordinators may run on one store at
once: a coordinator *leases* a point (``leases`` row, owner = ``host/pid/random`` per
:func:`limits.sweep.run_grid` call, ``until`` = wall-clock expiry) before it submits it, renews
its leases while it runs, and deletes them when the point is settled or the call ends.  A
point leased to another coordinator is not computed; a lease that has expired, or whose owner
was a process of this host that has ended (a killed coordinator), may be taken over.  The
``leases`` table was added after the first stores were written: it is created on opening, so
older stores keep working (schema version 1).

A file that is an SQLite database but not a sweep store (tables, but no sweep ``meta`` row) is
refused before anything is written to it.
"""
import datetime
import io
import itertools
import json
import os
import socket
import sqlite3
import time
import uuid

import numpy as np

_SCHEMA_VERSION = "1"
_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments(
    name TEXT PRIMARY KEY, fn TEXT NOT NULL, seed TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points(
    name TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    results TEXT, seconds REAL, finished TEXT, error TEXT,
    PRIMARY KEY (name, key));
CREATE INDEX IF NOT EXISTS points_seq ON points(name, seq);
CREATE TABLE IF NOT EXISTS arrays(
    name TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, npy BLOB NOT NULL,
    PRIMARY KEY (name, key, field));
CREATE TABLE IF NOT EXISTS failures(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, key TEXT NOT NULL,
    attempt INTEGER NOT NULL, error TEXT NOT NULL, traceback TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases(
    name TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, until REAL NOT NULL,
    PRIMARY KEY (name, key));
CREATE INDEX IF NOT EXISTS leases_owner ON leases(owner);
INSERT OR IGNORE INTO meta VALUES ('schema', '1');
COMMIT;
"""
MEMORY = ":memory:"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _store_path(store, create):
    if isinstance(store, bool) or not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a file path (str or os.PathLike), got "
                        f"{type(store).__name__} {store!r}")
    path = os.path.abspath(os.fspath(store))
    if os.fspath(store) in ("", MEMORY) or os.path.isdir(path):
        raise ValueError(f"store must be a file path, got {store!r}")
    if create:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise ValueError(f"store={os.fspath(store)!r}: directory {parent!r} does not exist "
                             f"(create it first)")
    elif not os.path.isfile(path):
        raise ValueError(f"store={os.fspath(store)!r} does not exist")
    return path


def _schema_of(con):
    """The sweep schema version of an open database, None if it has no tables at all (a new
    or empty file); ValueError if it has tables but is not a sweep store."""
    tables = sorted(r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
    if not tables:
        return None
    row = None
    if "meta" in tables:
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError:
            row = None
    if row is None:
        raise ValueError(f"it is an SQLite database with tables {tables} but no sweep schema "
                         f"(left untouched: pass a new file or a sweep store)")
    return row[0]


def _connect(path, create):
    """Open a sweep store (``path`` from :func:`_store_path`), or ``MEMORY`` for an in-memory
    one.  With ``create`` a new or empty file becomes a store (WAL journal,
    ``synchronous=NORMAL``); any other database is refused unchanged."""
    con = None
    try:
        if path == MEMORY:
            con = sqlite3.connect(MEMORY, isolation_level=None)
            con.executescript(_SCHEMA)
            return con
        con = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 60000")
        version = _schema_of(con)
        if version is None:
            if not create:
                raise ValueError("it has no tables (an empty database)")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.executescript(_SCHEMA)
            version = _schema_of(con)
        elif version != _SCHEMA_VERSION:
            raise ValueError(f"it has schema {version}, expected {_SCHEMA_VERSION}")
        elif create:
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("CREATE TABLE IF NOT EXISTS leases(name TEXT NOT NULL, key TEXT NOT "
                        "NULL, owner TEXT NOT NULL, until REAL NOT NULL, "
                        "PRIMARY KEY (name, key))")
            con.execute("CREATE INDEX IF NOT EXISTS leases_owner ON leases(owner)")
        return con
    except (sqlite3.DatabaseError, ValueError) as exc:
        if con is not None:
            con.close()
        raise ValueError(f"store={path!r} is not a sweep store ({exc})") from None


def _transaction(con, body):
    """Run ``body()`` in one write transaction (``BEGIN IMMEDIATE``); return its value."""
    con.execute("BEGIN IMMEDIATE")
    try:
        out = body()
        con.execute("COMMIT")
        return out
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _experiment(con, name, ref, spec):
    def body():
        row = con.execute("SELECT fn, seed FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            con.execute("INSERT INTO experiments VALUES (?, ?, ?, ?)",
                        (name, ref, json.dumps(spec, sort_keys=True), _now()))
            return
        if row[0] != ref:
            raise ValueError(f"name={name!r} was run with fn {row[0]}, not {ref}: use another "
                             f"name")
        if json.loads(row[1]) != spec:
            raise ValueError(f"name={name!r} was run with seed {json.loads(row[1])}, not "
                             f"{spec}: use another name")
    _transaction(con, body)


def _register(con, name, points):
    """Insert the grid's new points as pending; return {key: status} of the whole grid."""
    def body():
        status = dict(con.execute("SELECT key, status FROM points WHERE name = ?", (name,)))
        seq = con.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM points WHERE name = ?",
                          (name,)).fetchone()[0]
        new = [(name, key, seq + i, cj, "pending")
               for i, (key, cj) in enumerate((k, c) for k, c in points if k not in status)]
        con.executemany("INSERT INTO points(name, key, seq, params, status) "
                        "VALUES (?, ?, ?, ?, ?)", new)
        return status
    status = _transaction(con, body)
    return {key: status.get(key, "pending") for key, _ in points}


def _new_owner():
    """A lease owner id: ``host/pid/random``, unique per call."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex}"


def _owner_dead(owner):
    """True if ``owner`` (see :func:`_new_owner`) was a process of this host that has ended:
    its leases need not wait for their expiry (a killed coordinator rerun at once)."""
    try:
        host, pid, _ = owner.split("/")
        pid = int(pid)
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:                  # exists, owned by another user
        return False
    try:                             # a killed process not yet reaped by its parent (Linux)
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        return stat[stat.rindex(")") + 2] in "ZX"
    except (OSError, ValueError, IndexError):
        return False


def _claim(con, name, owner, keys, want, started, lease):
    """Lease up to ``want`` of ``keys`` (an iterable, in its order) to ``owner`` for
    ``lease`` seconds.

    In one write transaction, the keys are looked at in order, in small batches, and each is
    classified:

    * ``done``: stored (by anyone);
    * ``failed``: marked failed by another coordinator since ``started`` (this call's start,
      ISO time): it is settled for this call, as a rerun would retry it;
    * ``held``: leased to another coordinator whose lease has not expired and whose process
      is not known to have ended (:func:`_owner_dead`);
    * ``claimed``: otherwise (pending, failed before this call, or an expired lease), until
      ``want`` are claimed; the keys after that are not looked at.

    Returns the four lists."""
    now = time.time()
    claimed, done, failed, held = [], [], [], []
    dead = {}
    keys = iter(keys)
    batch = max(2 * want, 32)

    def body():
        while len(claimed) < want:
            chunk = list(itertools.islice(keys, batch))
            if not chunk:
                break
            marks = ",".join("?" * len(chunk))
            state = {row[0]: row[1:] for row in con.execute(
                f"SELECT p.key, p.status, p.finished, l.owner, l.until FROM points p "
                f"LEFT JOIN leases l ON l.name = p.name AND l.key = p.key "
                f"WHERE p.name = ? AND p.key IN ({marks})", (name, *chunk))}
            for key in chunk:
                status, finished, holder, until = state[key]
                if status == "done":
                    done.append(key)
                elif holder is not None and holder != owner and until > now and not \
                        dead.setdefault(holder, _owner_dead(holder)):
                    held.append(key)
                elif status == "failed" and finished is not None and finished >= started:
                    failed.append(key)
                elif len(claimed) < want:
                    claimed.append(key)
        con.executemany("INSERT OR REPLACE INTO leases(name, key, owner, until) "
                        "VALUES (?, ?, ?, ?)", [(name, k, owner, now + lease) for k in claimed])
    _transaction(con, body)
    return claimed, done, failed, held


def _renew(con, owner, lease):
    """Extend every lease of ``owner`` to ``lease`` seconds from now."""
    _transaction(con, lambda: con.execute("UPDATE leases SET until = ? WHERE owner = ?",
                                          (time.time() + lease, owner)))


def _release(con, owner):
    """Drop every lease of ``owner`` (its call ends: its unfinished points are free)."""
    _transaction(con, lambda: con.execute("DELETE FROM leases WHERE owner = ?", (owner,)))


def _store_result(con, name, key, res, blobs, seconds):
    """Store a completed point; False if it was already stored (by another coordinator).
    Its lease is left to :func:`_release` at the end of the call (a stored point is never
    claimed, whoever holds it), which saves a statement per point."""
    def body():
        cur = con.execute("UPDATE points SET status = 'done', results = ?, seconds = ?, "
                          "finished = ?, error = NULL WHERE name = ? AND key = ? "
                          "AND status != 'done'", (res, seconds, _now(), name, key))
        if cur.rowcount == 1:
            con.executemany("INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?)",
                            [(name, key, f, b) for f, b in blobs.items()])
        return cur.rowcount == 1
    return _transaction(con, body)


def _store_failure(con, name, key, attempt, error, tb, final):
    """Record a failed attempt; with ``final`` mark the point failed (unless it is stored) and
    drop its lease.  Returns (time, marked): ``marked`` False if the point was stored."""
    t = _now()

    def body():
        con.execute("INSERT INTO failures(name, key, attempt, error, traceback, time) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (name, key, attempt, error, tb, t))
        if not final:
            return True
        cur = con.execute("UPDATE points SET status = 'failed', error = ?, finished = ? "
                          "WHERE name = ? AND key = ? AND status != 'done'",
                          (error, t, name, key))
        con.execute("DELETE FROM leases WHERE name = ? AND key = ?", (name, key))
        return cur.rowcount == 1
    return t, _transaction(con, body)


def _last_failure(con, name, key):
    """(attempt, error, traceback, time) of the last recorded failure of a point."""
    return con.execute("SELECT attempt, error, traceback, time FROM failures WHERE name = ? "
                       "AND key = ? ORDER BY id DESC LIMIT 1", (name, key)).fetchone()


def _pick_name(con, name, path):
    names = [r[0] for r in con.execute("SELECT name FROM experiments ORDER BY created")]
    if name is None:
        if len(names) != 1:
            raise ValueError(f"store={path!r} holds {len(names)} experiments {names}: pass "
                             f"name=")
        return names[0]
    if name not in names:
        raise ValueError(f"name={name!r} is not in store={path!r} (it holds {names})")
    return name


def _arrays(con, name, keys=None):
    out = {}
    for key, fld, blob in con.execute("SELECT key, field, npy FROM arrays WHERE name = ?",
                                      (name,)):
        if keys is None or key in keys:
            out.setdefault(key, {})[fld] = np.load(io.BytesIO(blob), allow_pickle=False)
    return out


def _done_rows(con, name):
    """(key, params, results, seconds) of the stored points, in registration order."""
    return con.execute("SELECT key, params, results, seconds FROM points WHERE name = ? AND "
                       "status = 'done' ORDER BY seq", (name,))
