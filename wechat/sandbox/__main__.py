"""``python -m wechat.sandbox``: run the sandbox as a threaded local HTTP server."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from werkzeug.serving import make_server

from wechat.sandbox import snapshot
from wechat.sandbox.app import create_sandbox, world_of
from wechat.sandbox.world import SandboxConfig

log = logging.getLogger("wechat.sandbox")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wechat.sandbox", description="Local WeChat sandbox server"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--seed", type=int, default=None, help="seed ids and nonces for reproducible runs")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="divide scheduled delays (notification retries, expiries) by this factor",
    )
    parser.add_argument("--tick", type=float, default=0.2, help="seconds between delivery sweeps")
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="restore state from this JSON file at start (if present) and save it at shutdown",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a sandbox-CA certificate; v2 money APIs then require the merchant certificate",
    )
    parser.add_argument(
        "--ca-out",
        type=Path,
        default=None,
        help="with --tls: write the sandbox CA certificate here (to trust it)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM, sweeping due deliveries and timers in a background thread."""
    args = build_parser().parse_args(argv)
    if args.time_scale <= 0:
        raise SystemExit("--time-scale must be > 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = SandboxConfig(
        seed=args.seed, time_scale=args.time_scale, real_sleep=True, require_client_cert=args.tls
    )
    app = create_sandbox(config)
    world = world_of(app)
    if args.state_file is not None and snapshot.load_file(world, args.state_file):
        log.info("state restored from %s", args.state_file)
    context = None
    if args.tls:
        now = dt.datetime.fromtimestamp(world.clock.wall(), dt.UTC)
        context = world.ca().server_context(args.host, world.key_factory(), now)
        if args.ca_out is not None:
            args.ca_out.write_text(world.ca().cert_pem, encoding="ascii")
            log.info("sandbox CA certificate written to %s", args.ca_out)
    server = make_server(args.host, args.port, app, threaded=True, ssl_context=context)
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(args.tick):
            try:
                world.run_due()
            except Exception:  # a broken timer must not kill deliveries for everyone else
                log.exception("sandbox timer failed")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: shutting down", signum)
        stop.set()
        # shutdown() blocks until serve_forever returns, so call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sweeper = threading.Thread(target=sweep, name="sandbox-deliveries", daemon=True)
    sweeper.start()
    log.info(
        "WeChat sandbox on %s://%s:%s (seed=%s, time_scale=%s)",
        "https" if args.tls else "http",
        args.host,
        server.port,
        args.seed,
        args.time_scale,
    )
    server.serve_forever()
    stop.set()
    sweeper.join(timeout=2)
    server.server_close()
    if args.state_file is not None:
        snapshot.save_file(world, args.state_file)
        log.info("state saved to %s", args.state_file)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
