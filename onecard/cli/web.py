"""`onecard web`: the local web app (pages, JSON API, OpenAI-compatible /v1) over every capability."""

from __future__ import annotations

import argparse


def web_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default: 127.0.0.1); any other needs a token (one is generated)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--token", help="token every page and API request must carry (default: none on localhost)")
    p.add_argument("--folder", action="append", default=[], metavar="DIR",
                   help="a folder the app may read (RAG sources, datasets); repeat for more. Nothing else is read")
    p.add_argument("--allow-cors", action="append", default=[], metavar="ORIGIN",
                   help="an origin allowed to call the API from a browser (CORS is off otherwise); repeat for more")
    p.add_argument("--upload-limit-mib", type=float, default=512.0, help="largest upload accepted (default: 512)")


def web(args: argparse.Namespace) -> int:
    from onecard.web.server import serve
    from onecard.web.settings import WebSettings

    serve(WebSettings(host=args.host, port=args.port, token=args.token, folders=tuple(args.folder),
                      allow_cors=tuple(args.allow_cors), upload_limit_mib=args.upload_limit_mib))
    return 0
