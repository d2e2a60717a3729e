"""A RabbitMQ node of a test's own, on its own ports: tests that stop a broker, or change its
users, never touch the shared node on 5672 (docs: MACHINE.md, "RabbitMQ cluster")."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests_support import missing_service

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
BOOT_TIMEOUT_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RabbitNode:
    """``start()`` boots it (about 5-30 s), ``stop()`` halts it, ``remove()`` deletes its
    files; ``ctl(...)`` runs rabbitmqctl against it."""

    def __init__(self) -> None:
        if not SERVER.exists() or not CTL.exists():
            missing_service("rabbitmq-server (for a test node of its own)",
                            "bash scripts/ensure-services.sh rabbitmq")
        self.dir = Path(tempfile.mkdtemp(prefix="etlctl-test-rabbit-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"etltest{os.getpid()}x{self.port}@localhost"
        home = self.dir / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(f"etlctltestcookie{self.port}")
        cookie.chmod(0o400)
        (self.dir / "enabled_plugins").write_text("[].\n")  # no management UI: no 15672
        self.env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
        }
        self.running = False

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/%2F"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CTL), "-n", self.name, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        with open(self.dir / "server.out", "ab") as out:
            subprocess.Popen([str(SERVER)], env=self.env, stdout=out, stderr=out,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.running = True
        # await_startup waits only once the node is known to epmd: until then, ask again.
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        while True:
            waited = self.ctl("await_startup", "--timeout", "30")
            if waited.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        while not self._port_open() and time.monotonic() < deadline:
            time.sleep(0.2)
        if waited.returncode != 0 or not self._port_open():
            log = (self.dir / "server.out").read_text(errors="replace")[-1500:]
            self.stop()
            raise RuntimeError(f"the test RabbitMQ node did not start: {waited.stderr}\n{log}")

    def _port_open(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """Halt the node (by its own name and pid file: never another node)."""
        if not self.running:
            return
        self.ctl("stop", str(self.dir / "node.pid"))
        self.running = False
        deadline = time.monotonic() + 30
        while self._port_open() and time.monotonic() < deadline:
            time.sleep(0.2)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
