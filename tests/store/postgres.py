"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, on a free loopback port, its unix
socket in that folder too, stopped at the end of the session. One cluster per session, one database per test.

Why its own cluster: the tests never touch a PostgreSQL the machine may run, and need no password. As root,
PostgreSQL refuses to run, so the cluster runs as the `postgres` user the Debian package creates.
"""

from __future__ import annotations

import atexit
import glob
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import uuid

import pytest

from tests.helpers.server_process import free_port

MISSING = ("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: install the Debian package "
           "`postgresql` (`make deps` runs scripts/ensure_system_deps.sh, which does)")


def _binaries() -> pathlib.Path | None:
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return pathlib.Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return pathlib.Path(found[-1]).parent if found else None


class Cluster:
    def __init__(self, fsync: bool = False) -> None:
        """`fsync=False` for the tests (the cluster is thrown away); the store benchmark runs with it on."""
        bindir = _binaries()
        if bindir is None:
            pytest.fail(MISSING)
        self.bindir = bindir
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="cvi-pg-"))
        self.port = free_port()
        self.user = "cvi"
        self._as = []
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", self.user, "--no-locale", "-E", "UTF8")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
        self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "log"), "-w", "-o", options, "start")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bindir / tool), *args], check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: dict[str, object] = {}


def shared_cluster() -> Cluster:
    """The session's cluster, started on first use (tests/store and tests/hosts share it)."""
    if "cluster" not in _shared:
        _shared["cluster"] = Cluster()
        atexit.register(stop_shared_cluster)  # also when the session ends without its fixtures' teardown
    return _shared["cluster"]  # type: ignore[return-value]


def stop_shared_cluster() -> None:
    cluster = _shared.pop("cluster", None)
    if cluster is not None:
        cluster.stop()  # type: ignore[attr-defined]
