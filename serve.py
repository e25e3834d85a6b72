"""Inpainting studio in the browser: paint a hole, see it filled, see where every patch came from.

    python serve.py --ckpt DIR [--ckpt DIR2 ...] [--host 127.0.0.1] [--port 8000]

then open http://127.0.0.1:8000. --ckpt is a training workdir or a convert
output; give it several times for a model picker. The HTTP API is in the
README ("Studio"). Exit code 2 for bad flags or checkpoints, 1 if the port
cannot be opened.
"""

import argparse
import ipaddress
import logging
import os
import signal
import sys


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", action="append", default=[],
                   help="checkpoint directory (training workdir or convert output); repeatable")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--size", type=int, default=None,
                   help="working size: longer side the network sees (default: each model's training crop)")
    p.add_argument("--max-upload-mb", type=float, default=50, help="largest request body (default 50 MB)")
    p.add_argument("--max-megapixels", type=float, default=50, help="largest image (default 50 megapixels)")
    p.add_argument("--allow-host", action="append", default=[],
                   help="also answer requests addressed to this host name (repeatable; the listen address "
                        "and localhost always are; '*' allows any, which lets other web sites reach it)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    args = p.parse_args(argv)
    if args.size is not None and args.size < 1 or args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        p.error("--size, --max-upload-mb and --max-megapixels must be positive")
    if not 0 <= args.port <= 65535:
        p.error("--port must be from 0 to 65535")
    return args


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    args = parse(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's restore chatter
    from shiftnet_jax.checkpoint import NotACheckpointError
    from shiftnet_jax.studio import engine, server

    ckpts = args.ckpt or engine.default_checkpoints()
    if not ckpts:
        return fail("--ckpt is needed: a checkpoint directory (a training workdir or a convert output)", 2)
    for path in ckpts:  # the cheap check first, before the port and the models
        if not os.path.isdir(path):
            return fail(f"{path}: no such directory", 2)
    try:
        sock = server.bind(args.host, args.port)
    except OSError as e:
        return fail(str(e), 1)
    try:
        models = engine.load_models(ckpts, args.size)
    except NotACheckpointError as e:
        sock.close()
        return fail(str(e), 2)
    studio = engine.Engine(models, max_bytes=int(args.max_upload_mb * 2**20),
                           max_pixels=int(args.max_megapixels * 1e6))
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    shown = ", ".join(f"{m.name} (working size {m.size})" for m in models)
    print(f"Shift-Net studio on http://{url_host}:{port}  models: {shown}  (Ctrl-C stops)", flush=True)
    if not ipaddress.ip_address(host).is_loopback:
        print(f"note: {host} is reachable from other machines, and the studio has no authentication",
              file=sys.stderr, flush=True)
    # uvicorn shuts down gracefully, then re-raises the signal: Ctrl-C or SIGTERM ends here, quietly.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        hosts = (*server.guard.LOOPBACK_NAMES, host, *args.allow_host)
        server.make_server(server.create_app(studio, hosts), sock, access_log=args.access_log).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        studio.close()
    print("studio stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
