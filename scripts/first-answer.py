#!/usr/bin/env python3
"""Milliseconds from START (ns since the epoch) until examples/search_service answers a
search on 127.0.0.1:PORT, polled every millisecond (scripts/bench-rootless.sh,
scripts/bench-pack.sh).

Usage: scripts/first-answer.py PORT START
"""
import socket
import sys
import time

port, start = int(sys.argv[1]), int(sys.argv[2])
while True:
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"search alpha\n")
            if s.makefile().readline():
                break
    except OSError:
        time.sleep(0.001)
print(round((time.time_ns() - start) / 1e6))
