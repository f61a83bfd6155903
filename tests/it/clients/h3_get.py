"""An HTTP/3 client that is not ours (aioquic), for the black-box tests.

usage: h3_get.py PORT CA_PEM CONNECTIONS REQUESTS PATH

Opens CONNECTIONS connections to 127.0.0.1:PORT one after another (each
from a new local port), makes REQUESTS GETs of PATH on each, and prints one
line per response: `<connection> <status> <x-worker-id> <body>`.
"""

import asyncio
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}
        self.responses = {}

    def quic_event_received(self, event):
        for ev in self.h3.handle_event(event):
            if not isinstance(ev, (HeadersReceived, DataReceived)):
                continue
            r = self.responses.setdefault(ev.stream_id, {"headers": [], "body": b""})
            if isinstance(ev, HeadersReceived):
                r["headers"] += ev.headers
            else:
                r["body"] += ev.data
            if ev.stream_ended and ev.stream_id in self.waiting:
                self.waiting.pop(ev.stream_id).set_result(r)

    async def get(self, path):
        stream = self._quic.get_next_available_stream_id()
        self.h3.send_headers(
            stream,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        done = asyncio.get_running_loop().create_future()
        self.waiting[stream] = done
        self.transmit()
        return await asyncio.wait_for(done, 10)


async def main(port, ca, connections, requests, path):
    for n in range(connections):
        config = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, server_name="localhost"
        )
        config.load_verify_locations(ca)
        async with connect(
            "127.0.0.1", port, configuration=config, create_protocol=Client
        ) as client:
            for _ in range(requests):
                r = await client.get(path)
                headers = dict(r["headers"])
                status = headers[b":status"].decode()
                worker = headers.get(b"x-worker-id", b"-").decode()
                print(n, status, worker, r["body"].decode().strip(), flush=True)


asyncio.run(
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
)
