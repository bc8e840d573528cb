"""Which genrec files one chat request crosses, as JSON on stdout.

A real ``genrec serve`` app (uvicorn in a thread of this process, the real engine, the settings
from the environment: GENREC_HOME, GENREC_MODEL_CACHE, ...) answers one warm-up POST
/v1/chat/completions, then the same request again under a profiler hook on every server thread
(``threading.setprofile``: the event loop and the worker threads it starts). Every genrec
``*.py`` file with a function that ran during that second request is counted, so start-up and
first-use loading are left out. The reload watcher is turned off (it is not the request).
``after_lm`` lists the files entered after the engine's last call returned: what the request
climbs back into once the LM has answered.

    python -m genrec.bench.request_path [--stream] [--mode rank]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import genrec

PACKAGE = str(Path(genrec.__file__).resolve().parent)


class Tracer:
    """Records (file, function) of every Python call while ``on``, and the order of the files."""

    def __init__(self) -> None:
        self.on = False
        self.calls: dict[str, set[str]] = defaultdict(set)
        self.order: list[str] = []  # the file of each call, in order
        self.engine_done = 0  # len(order) when an engine function last returned

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if not self.on or not frame.f_code.co_filename.startswith(PACKAGE):
            return
        name = frame.f_code.co_filename[len(PACKAGE) - len("genrec") :]
        if event == "call":
            self.calls[name].add(frame.f_code.co_name)
            self.order.append(name)
        elif event == "return" and name.startswith("genrec/engines/"):
            self.engine_done = len(self.order)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream", action="store_true", help="a streamed request")
    parser.add_argument("--mode", default=None, help="the request's mode (default: settings)")
    parser.add_argument("--port", type=int, default=18931)
    args = parser.parse_args(argv)

    import httpx
    import uvicorn

    from genrec.server.app import create_app
    from genrec.settings import Settings

    settings = Settings(reload_interval_s=0)
    tracer = Tracer()
    threading.setprofile(tracer)  # every thread started from here on: the server's
    config = uvicorn.Config(create_app(settings), port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{args.port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        sys.exit("the server did not become ready")
    body: dict[str, Any] = {
        "model": "genrec",
        "messages": [{"role": "user", "content": "a funny animated movie for the family"}],
        "history": ["Toy Story (1995)", "Aladdin (1992)"],
        "stream": args.stream,
    }
    if args.mode:
        body["mode"] = args.mode
    with httpx.Client(base_url=base, timeout=300) as client:
        client.post("/v1/chat/completions", json=body).raise_for_status()  # first use: loads
        tracer.on = True
        response = client.post("/v1/chat/completions", json=body)
        time.sleep(0.2)  # the handler's tail (metrics, stream close) after the last byte
        tracer.on = False
        response.raise_for_status()
    server.should_exit = True
    thread.join(timeout=120)
    files = sorted(tracer.calls)
    out = {
        "files": len(files),
        "functions": sum(len(v) for v in tracer.calls.values()),
        "after_lm": sorted(set(tracer.order[tracer.engine_done :])),
        "stream": args.stream,
        "mode": args.mode or settings.mode,
        "by_file": {f: sorted(tracer.calls[f]) for f in files},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
