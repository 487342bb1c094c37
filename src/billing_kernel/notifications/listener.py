"""`billing-kernel webhooks listen`: a webhook receiver for trying things out, on the
standard library's HTTP server. It verifies signatures with the kernel's own signing code;
a receiver of your own should use an independent implementation (see docs/alerts.md)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from billing_kernel.notifications.rules import sign


def listen(port: int, secret: str | None, say: Callable[[str], object]) -> None:
    """Serve on 127.0.0.1:`port` until interrupted."""

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            message_id = self.headers.get("webhook-id", "")
            verdict = ""
            if secret:
                stamp = self.headers.get("webhook-timestamp", "")
                expected = sign(secret, message_id, int(stamp) if stamp.isdigit() else 0, body)
                given = self.headers.get("webhook-signature", "").split()
                ok = any(hmac.compare_digest(expected, s) for s in given)
                verdict = " (signature verified)" if ok else " (SIGNATURE DOES NOT VERIFY)"
            try:
                event = json.loads(body)
                say(f"{event.get('type')} {message_id}{verdict}")
                say(json.dumps(event.get("data"), indent=2))
            except ValueError:
                say(f"not JSON: {body[:200]!r}")
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    say(f"listening on http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
