"""``python -m api [--host H] [--port P] [--workers N]``: serve the API with the production settings."""

from __future__ import annotations

import argparse

from api.server import default_workers, run


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help=f"worker processes, each with its own copy of the models (default: one per core, {default_workers()} here)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    run(host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)


if __name__ == "__main__":
    main()
