"""Restartable Fulmar brokers for the durability tests: same port, same data directory, every start."""

from __future__ import annotations

from pathlib import Path

from conftest import Broker, fulmar_binary, free_port


class Restartable:
    """``fulmar serve`` on one port and one ``--data-dir`` that can be stopped (SIGTERM), killed (SIGKILL)
    and started again; every run's output goes to its own log file."""

    def __init__(self, tmp_path: Path, *extra: str, data_dir: Path | None = None):
        self.tmp_path = tmp_path
        self.port = free_port()
        self.data_dir = data_dir or tmp_path / "data"
        self.extra = list(extra)
        self.runs = 0
        self.broker: Broker | None = None

    def argv(self) -> list[str]:
        return [fulmar_binary(), "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", str(self.data_dir), *self.extra]

    def start(self) -> Broker:
        self.runs += 1
        self.broker = Broker(self.argv(), self.port, self.tmp_path / f"run{self.runs}.log", "fulmar")
        self.broker.wait_ready()
        return self.broker

    def stop(self) -> int | None:
        assert self.broker is not None
        return self.broker.terminate()

    def kill(self) -> None:
        assert self.broker is not None
        self.broker.kill()
        self.broker._log.close()

    def restart(self, hard: bool = False) -> Broker:
        if hard:
            self.kill()
        else:
            code = self.stop()
            assert code == 0, f"broker exited {code} on SIGTERM:\n{self.broker.log()[-3000:]}"
        return self.start()
