"""The test and benchmark harness's Server keeps a chatty server running: its output cannot fill a pipe."""

import signal
import sys

import httpx

from bench.server import Server

# Stands in for `python -m service`: answers /readyz and /models, and writes far more than a pipe holds
# (64 KiB) before it serves and on every request, as an access log at info level does under load.
CHATTY = """
import http.server, json, os, sys
sys.stdout.write("x" * 200_000); sys.stdout.flush()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"ready": True}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        sys.stdout.write("request\\n" * 10_000); sys.stdout.flush()
http.server.HTTPServer(("127.0.0.1", int(os.environ["EMBED_PORT"])), Handler).serve_forever()
"""


def test_server_output_never_blocks_the_server(tmp_path):
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    s = Server(tmp_path, command=[sys.executable, str(script)]).start(timeout=20)
    try:
        for _ in range(5):
            assert httpx.get(s.url + "/readyz", timeout=5).status_code == 200
        assert s.terminate(timeout=10) == -signal.SIGTERM
    finally:
        s.stop()
    assert s.log.startswith(b"x" * 200_000) and s.log.count(b"request\n") >= 5 * 10_000
