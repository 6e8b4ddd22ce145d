"""An HTTP/3 client for tests/http3.rs, on aioquic (tests/py/requirements.txt).

Reads one JSON document on stdin:

    {"port": 8443, "ca": "/path/ca.crt", "host": "127.0.0.1",
     "requests": [{"method": "GET", "path": "/", "headers": [["authorization", "Bearer x"]],
                   "body_b64": "...", "reset_after": 0.1}]}

and sends the requests one after the other on one QUIC connection (verifying the server's
certificate against "ca"). Each request carries :method, :scheme https, :authority
host:port (or its "authority") and :path, then its headers as given, in order (HTTP/3
field names are lower case). With "reset_after", the client cancels the request that many
seconds after sending it: RESET_STREAM and STOP_SENDING with H3_REQUEST_CANCELLED, and
reads nothing more of it.

Prints one JSON document: a list with, for each request, {"status", "headers" (a list of
[name, value] in the order received), "body_b64", "reset"}. Exits non-zero on a connection
failure or a response that did not come within "timeout" seconds (default 15).
"""

import asyncio
import base64
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamReset


class Exchange:
    """What came back on one request stream."""

    def __init__(self, loop):
        self.status = None
        self.headers = []
        self.body = bytearray()
        self.reset = False
        self.done = loop.create_future()

    def finish(self):
        if not self.done.done():
            self.done.set_result(None)

    def result(self):
        return {
            "status": self.status,
            "headers": self.headers,
            "body_b64": base64.b64encode(bytes(self.body)).decode(),
            "reset": self.reset,
        }


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.exchanges = {}

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            # Nothing more comes: what is pending ends as it is (status null if nothing came).
            for ex in self.exchanges.values():
                ex.finish()
            return
        if isinstance(event, StreamReset):
            ex = self.exchanges.get(event.stream_id)
            if ex is not None:
                ex.reset = True
                ex.finish()
        for ev in self.h3.handle_event(event):
            ex = self.exchanges.get(getattr(ev, "stream_id", None))
            if ex is None:
                continue
            if isinstance(ev, HeadersReceived):
                for name, value in ev.headers:
                    name, value = name.decode(), value.decode("latin-1")
                    if name == ":status":
                        ex.status = int(value)
                    else:
                        ex.headers.append([name, value])
            elif isinstance(ev, DataReceived):
                ex.body.extend(ev.data)
            if ev.stream_ended:
                ex.finish()

    def send(self, authority, req):
        stream_id = self._quic.get_next_available_stream_id()
        ex = Exchange(self._loop)
        self.exchanges[stream_id] = ex
        headers = [
            (b":method", req.get("method", "GET").encode()),
            (b":scheme", b"https"),
            (b":authority", req.get("authority", authority).encode()),
            (b":path", req["path"].encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in req.get("headers", [])]
        body = base64.b64decode(req.get("body_b64", ""))
        self.h3.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h3.send_data(stream_id, body, end_stream=True)
        self.transmit()
        return stream_id, ex

    def cancel(self, stream_id):
        code = ErrorCode.H3_REQUEST_CANCELLED
        self._quic.reset_stream(stream_id, code)
        self._quic.stop_stream(stream_id, code)
        self.exchanges[stream_id].reset = True
        self.exchanges[stream_id].finish()
        self.transmit()


async def run(doc):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(doc["ca"])
    host = doc.get("host", "127.0.0.1")
    port = doc["port"]
    timeout = doc.get("timeout", 15)
    results = []
    async with connect(
        host, port, configuration=config, create_protocol=Client
    ) as client:
        for req in doc["requests"]:
            stream_id, ex = client.send(f"{host}:{port}", req)
            if "reset_after" in req:
                await asyncio.sleep(req["reset_after"])
                client.cancel(stream_id)
            else:
                await asyncio.wait_for(ex.done, timeout)
            results.append(ex.result())
        if doc.get("linger"):
            await asyncio.sleep(doc["linger"])
    return results


def main():
    doc = json.load(sys.stdin)
    results = asyncio.run(run(doc))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
