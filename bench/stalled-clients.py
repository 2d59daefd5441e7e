#!/usr/bin/env python3
"""Stalled SSE readers for bench/stalled-readers.mjs (which starts this; not meant to be run alone).

Opens COUNT TCP connections to HOST:PORT, each with a small receive buffer and an Ethernet-sized
MSS set before connecting (Node's net module can set neither), sends `GET PATH`, reads the status
line and headers, and then never reads again. Why: on loopback (MTU 64 KiB) Linux sizes a new
connection's send buffer from the MSS, ~1-4 MiB, so with Node clients the kernel swallowed a whole
1 MiB event log per stalled reader and the server never held anything back; a 1460-byte MSS
(what a client across Ethernet announces) and a 16 KiB receive buffer leave the kernel a few tens
of kB per connection, as across a real network, and the rest of the log to the server.

Prints `opened <n>` every 10 connections, then one JSON line with the statuses, then keeps the
sockets open until stdin closes or the process is killed (its sockets then close with it).

usage: stalled-clients.py HOST PORT PATH COUNT [MSS=1460] [RCVBUF=16384]
"""
import json
import socket
import sys


def main() -> None:
    host, port, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    mss = int(sys.argv[5]) if len(sys.argv) > 5 else 1460
    rcvbuf = int(sys.argv[6]) if len(sys.argv) > 6 else 16384
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    sockets = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            s.settimeout(30)
            s.connect((host, port))
            s.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(1024)
                if not chunk:
                    break
                head += chunk
                if len(head) > 16384:
                    break
            status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/1.") else "0"
            statuses[status] = statuses.get(status, 0) + 1
            sockets.append(s)
        except OSError as err:
            errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
            s.close()
        if (i + 1) % 10 == 0:
            print(f"opened {i + 1}", flush=True)
    print(json.dumps({"statuses": statuses, "errors": errors, "open": len(sockets)}), flush=True)
    # Hold them, unread, until told to let go.
    sys.stdin.read()
    for s in sockets:
        s.close()


if __name__ == "__main__":
    main()
