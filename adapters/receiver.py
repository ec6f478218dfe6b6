"""The agency's webhook endpoint: Standard Webhooks deliveries in, acknowledgements out.

Each request's signature and timestamp are verified with the subscription secret (the
`standardwebhooks` package refuses timestamps more than five minutes off, so a captured
request replayed later fails, as does a forged signature). A verified event is handed over
once per `webhook-id` and then acknowledged to flagshare as received. If the acknowledgement
cannot be made the request fails, flagshare retries with the same `webhook-id`, and the retry
is acknowledged without being handed over again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from adapters.client import ApiError, ApiUnavailable
from adapters.inbox import Handoff

MAX_BODY = 1024 * 1024


class WebhookReceiver:
    def __init__(self, secret: str, inbox: Handoff, ack: Callable[[str], None], *,
                 host: str = "127.0.0.1", port: int = 0,
                 log: Callable[[str], None] = lambda message: None):
        self.webhook = Webhook(secret)
        self.inbox, self.ack, self.log = inbox, ack, log
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = self.headers.get("content-length", "")
                if not length.isdigit():
                    status = 411
                elif int(length) > MAX_BODY:
                    status = 413
                else:
                    status = receiver.handle(dict(self.headers), self.rfile.read(int(length)))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/"

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        """The HTTP status for one delivery."""
        headers = {k.lower(): v for k, v in headers.items()}
        delivery_id = headers.get("webhook-id", "")
        try:
            self.webhook.verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError) as exc:
            self.log(f"refused {delivery_id or 'a request'}: {exc or 'bad signature'}")
            return 401
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "type" not in event:
            self.log(f"refused {delivery_id}: not a flagshare event")
            return 400
        if self.inbox.accept(delivery_id, event, "webhook"):
            self.log(f"received {delivery_id} {event['type']}")
        else:
            self.log(f"already had {delivery_id}; acknowledging again")
        try:
            self.ack(delivery_id)
        except (ApiError, ApiUnavailable) as exc:
            self.log(f"could not acknowledge {delivery_id} ({exc}); flagshare will retry")
            return 503
        return 204

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever()
        finally:
            self.server.server_close()
