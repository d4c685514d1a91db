"""``python -m conveyor.serving.server --pipeline NAME [--pipeline NAME2 ...]``: run the service.

With one ``--pipeline`` the service is what it always was (``/predict`` at the root); with
several (repeated, or comma-separated) one process serves each by name under
``/models/{name}/...`` (see :mod:`conveyor.serving.app`).

One uvicorn worker (the model holder and the prediction log are per process), uvloop
and httptools when installed. BLAS/OpenMP are limited to one thread unless the
environment says otherwise: a one-row prediction gains nothing from threads, and on a
busy two-core machine OpenMP's spinning threads turned a 1 ms prediction into 1 s tails.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import socket
import sys
from collections.abc import Sequence

from conveyor.errors import ConfigError

log = logging.getLogger(__name__)

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor serve",
        description="Serve NAME@production over HTTP: /predict, /health, /version, /admin/reload.",
    )
    parser.add_argument(
        "--pipeline",
        action="append",
        required=True,
        help="pipeline (registered model) name; repeat it (or separate names by commas) to "
        "serve several models by name under /models/{name}/predict",
    )
    parser.add_argument(
        "--host", default=None, help="bind address (default $CONVEYOR_SERVE_HOST or 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default $CONVEYOR_SERVE_PORT or 8000)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (off: the hot path)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service until SIGINT/SIGTERM; returns the process exit code."""
    args = _parser().parse_args(argv)
    for var in _THREAD_VARS:  # before NumPy/scikit-learn are imported
        os.environ.setdefault(var, "1")
    # MLflow draws tqdm bars on every download: noise in a service log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import uvicorn

    from conveyor.serving.app import create_app
    from conveyor.serving.settings import ServingSettings
    from conveyor.settings import Settings

    try:
        settings = Settings.from_env()
        names = [n.strip() for arg in args.pipeline for n in arg.split(",") if n.strip()]
        every = [
            ServingSettings.from_env(name, settings=settings, host=args.host, port=args.port)
            for name in names
        ]
        if not every:
            raise ConfigError("--pipeline names no pipeline")
        serving = every[0]
    except ConfigError as exc:
        print(f"conveyor serve: {exc}", file=sys.stderr)
        return 2
    try:
        # Bound before the app loads its model, so a busy port fails at once.
        sock = _bind(serving.host, serving.port)
    except OSError as exc:
        print(
            f"conveyor serve: cannot listen on {serving.host}:{serving.port}: {exc.strerror or exc}. "
            "Stop what uses the port or pass --port.",
            file=sys.stderr,
        )
        return 2
    host, port = sock.getsockname()[:2]
    try:
        app = create_app(every[0] if len(every) == 1 else every, settings)
    except ConfigError as exc:
        sock.close()
        print(f"conveyor serve: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        log_config=None,  # keep the logging configured above
        log_level=args.log_level,
        access_log=args.access_log,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    log.info(
        "Serving %s on http://%s:%d (/predict %s)",
        f"{serving.model_name}@{serving.alias}"
        if len(every) == 1
        else f"{len(every)} models under /models/{{name}}",
        host,
        port,
        "needs a bearer token" if serving.predict_token else "needs no token",
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, whichever ``host`` is)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


if __name__ == "__main__":
    sys.exit(main())
