"""Helpers for testing the `fulmar pub` / `fulmar sub` / `fulmar chat` client commands: the binary, a process
whose output lines are awaited with a timeout, and a TCP proxy that can cut and refuse connections."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import threading

from helpers import WAIT


def fulmar_bin() -> str:
    path = os.environ.get("FULMAR_BIN")
    if not path or not os.access(path, os.X_OK):
        raise AssertionError("FULMAR_BIN must name the fulmar binary (scripts/test.sh sets it)")
    return path


def run(argv: list[str], *, stdin: str | bytes | None = None, timeout: float = WAIT) -> subprocess.CompletedProcess:
    """Runs a command to completion (bounded), capturing stdout and stderr as text."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


class LineProc:
    """A running command whose stdout+stderr lines are read by a thread into a queue; every wait is bounded."""

    def __init__(self, argv: list[str], *, stdin: bool = False, name: str = "process"):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match:
        """Waits for a line matching ``pattern`` (regex search); earlier lines are kept in ``seen``."""
        rx = re.compile(pattern)
        for line in self.seen:
            m = rx.search(line)
            if m:
                self.seen.remove(line)
                return m
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within {timeout}s; "
                                     f"unclaimed lines: {self.seen}") from None
            if line is None:
                self.lines.put(None)
                raise AssertionError(f"{self.name} exited ({self.proc.poll()}) before {pattern!r}; lines: {self.seen}")
            m = rx.search(line)
            if m:
                return m
            self.seen.append(line)

    def drain(self) -> list[str]:
        """Lines received so far and not claimed by ``expect``."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return self.seen
            if line is None:
                self.lines.put(None)
                return self.seen
            self.seen.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None, "started without stdin"
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout}s; lines: {self.drain()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


class GateProxy:
    """A TCP proxy to ``upstream`` on a free loopback port. ``cut()`` drops every proxied connection and refuses
    new ones (accepts and closes them at once) until ``open()``: a network failure the test controls."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_open = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if not self.is_open:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(self.upstream, timeout=WAIT)
                    server.settimeout(None)
                except OSError:
                    client.close()
                    continue
                self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            self.is_open = False
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def close_gate(self) -> None:
        with self.lock:
            self.is_open = False

    def open(self) -> None:
        with self.lock:
            self.is_open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()
