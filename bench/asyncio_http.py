# SPDX-License-Identifier: MIT
"""The Python asyncio HTTP keep-alive server of W4 (bench/README.md).

    python3 asyncio_http.py [--uvloop] <port>

`GET /` answers 200 with the 13-byte body `Hello, World!`, any other path 404; connections stay
open. Reading each request (request line and headers) runs under `asyncio.timeout(5)`; a
connection that sends no complete request within 5 s is closed.
"""

import asyncio
import sys

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


async def serve(reader, writer):
    try:
        while True:
            async with asyncio.timeout(5):
                line = await reader.readline()
                if not line:
                    break
                while True:  # the headers; requests have no body
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
            parts = line.split()
            writer.write(OK if len(parts) >= 2 and parts[0] == b"GET" and parts[1] == b"/" else NOT_FOUND)
            await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        args = args[1:]
    if len(args) != 1:
        print("usage: asyncio_http.py [--uvloop] <port>", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(int(args[0])))
    except KeyboardInterrupt:
        pass
