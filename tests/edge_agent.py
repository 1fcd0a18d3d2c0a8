"""A live edge for tests/test_proxy_edge.py: Debian's nginx behind an echo upstream,
in private mount and network namespaces.

``EdgeAgent`` (in the test process) starts this module's ``main()`` in
``unshare -m -n``; ``main()`` starts nginx with the container's own START_SCRIPT
and answers one request per stdin line. A helper module, so that the process in
the namespace imports no test module.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components import proxy
from components.api import API_PORT
from components.proxy import CONFIG_SCRIPT, EDGE_DIR, HTTP_PORT, HTTPS_PORT, START_SCRIPT
from nginx_support import nginx_binary

REPO = Path(__file__).resolve().parent.parent

PUBLIC_HOST = "prefect.test"
CLIENT = "127.0.0.1"
DENIED_CLIENT = "127.0.0.2"
THROTTLED_CLIENT = "127.0.0.3"  # allowlisted too; used by the rate-limit test alone


def main() -> None:  # pragma: no cover - runs in the namespace, driven by EdgeAgent
    """Inside the namespace: an echo upstream on the replicas' port, the edge config
    written by CONFIG_SCRIPT from this process's environment, nginx started by
    START_SCRIPT, and one request per stdin line."""
    import http.client
    import http.server
    import socket
    import ssl
    import threading

    # The container's tmpfs, mounted only now: this interpreter and its imports may
    # live under /tmp (a checkout there), which the mounts then cover.
    subprocess.run(["sh", "-c", os.environ.pop(AGENT_MOUNTS_ENV)], check=True)

    class Echo(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = b"true" if self.path == "/api/health" else json.dumps(
                {"path": self.path, "method": self.command, "headers": {k.lower(): v for k, v in self.headers.items()}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", API_PORT), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    ports = [HTTP_PORT] + ([HTTPS_PORT] if os.environ.get(proxy.CERTIFICATE_ENV) else [])

    def say(message):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    # As on the stack: the edge-config job writes (and nginx -t checks) a generation
    # from its environment, then nginx starts without any of it in its own.
    job = subprocess.run(["sh", "-c", CONFIG_SCRIPT], capture_output=True, text=True)
    if job.returncode != 0:
        say({"error": f"the edge config job failed: {job.stdout[-1500:]} {job.stderr[-1500:]}"})
        return
    log = open("/tmp/nginx.log", "w+")
    nginx_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    nginx = subprocess.Popen(["sh", "-c", START_SCRIPT], stdout=log, stderr=subprocess.STDOUT, env=nginx_env)

    def listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    deadline = time.monotonic() + 15
    while not all(listening(p) for p in ports):
        if nginx.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            say({"error": f"nginx did not start: {log.read()[-3000:]}"})
            return
        time.sleep(0.05)
    say({"ready": True})

    def request(scheme, host, port, path, method="GET", headers=None, source=CLIENT, ca=None):
        if scheme == "https":
            context = ssl.create_default_context(cadata=ca)
            conn = http.client.HTTPSConnection(host, port, context=context, source_address=(source, 0), timeout=10)
        else:
            conn = http.client.HTTPConnection(host, port, source_address=(source, 0), timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            return {"status": response.status, "headers": {k.lower(): v for k, v in response.getheaders()},
                    "body": body}
        except Exception as err:  # noqa: BLE001 reported to the test
            return {"error": f"{type(err).__name__}: {err}"}
        finally:
            conn.close()

    for line in sys.stdin:
        call = json.loads(line)
        say([request(**call["request"]) for _ in range(call.get("count", 1))])
    nginx.terminate()
    nginx.wait(timeout=10)


AGENT_MOUNTS_ENV = "EDGE_AGENT_MOUNTS"


class EdgeAgent:
    """Drives main() in `unshare -m -n`: a network of its own (only loopback,
    so nginx's fixed ports collide with nothing), /etc/hosts naming the replicas,
    and tmpfs where the container has it."""

    def __init__(self, tmp_path: Path, env: dict[str, str], hosts: list[str]):
        nginx_binary()
        (tmp_path / "hosts").write_text("".join(f"127.0.0.1 {h}\n" for h in ["localhost", PUBLIC_HOST, *hosts]))
        mounts = " && ".join([
            *(f"mount -t tmpfs -o mode=1777 tmpfs {p}" for p in proxy.TMPFS if Path(p).is_dir()),
            # the edge config volume
            "mount -t tmpfs -o mode=755 tmpfs /run", f"mkdir -p {EDGE_DIR}",
        ])
        agent = (f"import sys; sys.path[:0] = {[str(REPO), str(REPO / 'tests')]!r}; "
                 "import edge_agent; edge_agent.main()")
        script = " && ".join([
            "ip link set lo up",
            f"mount --bind {tmp_path}/hosts /etc/hosts",
            f"exec {shlex.quote(sys.executable)} -c {shlex.quote(agent)}",
        ])
        path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
        self.process = subprocess.Popen(
            ["unshare", "-m", "-n", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={"PATH": path, AGENT_MOUNTS_ENV: mounts, **env},
        )
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        ready = self._read(timeout=60)
        if ready != {"ready": True}:
            self.close()
            pytest.fail(f"the edge did not come up: {ready}")

    def _read(self, timeout: float):
        if not self.selector.select(timeout):
            raise TimeoutError("no answer from the edge agent")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the edge agent exited: {self.process.stderr.read()[-3000:]}")
        return json.loads(line)

    def requests(self, url: str, *, count: int = 1, **options) -> list[dict]:
        scheme, rest = url.split("://", 1)
        authority, _, path = rest.partition("/")
        host, _, port = authority.rpartition(":")
        request = {"scheme": scheme, "host": host, "port": int(port), "path": "/" + path, **options}
        self.process.stdin.write(json.dumps({"request": request, "count": count}) + "\n")
        self.process.stdin.flush()
        return self._read(timeout=60 + 10 * count)

    def get(self, url: str, **options) -> dict:
        return self.requests(url, **options)[0]

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
