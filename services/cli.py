"""`portraits` — the project's command line: render portraits locally, list and preview the style catalog."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from redis.exceptions import RedisError

from services.worker.engine.catalog import CATALOG, Family
from shared.errors import PortraitError

if TYPE_CHECKING:  # at run time the engine is imported only by the commands that render (see _engine)
    from services.worker.engine.pipeline import PortraitEngine

#: What every subcommand's `handler` default is: the parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]

STYLE_CHOICES_HELP = "auto, a family (oil, watercolor, ink) or a style name from `portraits styles`"


def _engine(size: int | None) -> PortraitEngine:
    # Imported here so `portraits styles` answers instantly, without loading torch and the networks.
    from services.worker.engine.config import EngineConfig
    from services.worker.engine.pipeline import PortraitEngine
    from shared.settings import Settings, get_settings

    settings = get_settings()
    if size is not None:
        settings = Settings(**{**settings.model_dump(), "output_size": size})
    return PortraitEngine(EngineConfig.from_settings(settings))


def cmd_render(args: argparse.Namespace) -> int:
    data = args.photo.read_bytes()
    started = time.perf_counter()
    engine = _engine(args.size)
    loaded = time.perf_counter()
    portrait = engine.render(data, style=args.style, strength=args.strength)
    args.output.write_bytes(portrait.data)
    print(f"style:    {portrait.style} ({portrait.family}, strength {portrait.strength:.2f})")
    print(f"reason:   {portrait.reason}")
    print(f"portrait: {args.output} ({portrait.width}×{portrait.height}, {len(portrait.data) // 1024} KiB)")
    stages = "  ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in portrait.timings.items())
    print(f"stages:   {stages}")
    print(f"total:    {sum(portrait.timings.values()):.2f} s rendering, {loaded - started:.2f} s loading models")
    return 0


def cmd_styles(args: argparse.Namespace) -> int:
    width = max(len(style.name) for style in CATALOG)
    for family in Family:
        print(f"{family.value}:")
        for style in (s for s in CATALOG if s.family is family):
            print(f"  {style.name:<{width}}  {style.painter:<14}  {style.description} (strength {style.strength:.2f})")
    return 0


def cmd_sheet(args: argparse.Namespace) -> int:
    from services.worker.engine.contact_sheet import render_contact_sheet

    render_contact_sheet(_engine(args.size), [path.read_bytes() for path in args.photos], args.output)
    print(f"contact sheet: {args.output}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from services.client import ApiError, PortraitsClient

    client = PortraitsClient(args.server)
    try:
        accepted = client.submit(args.photo, style=args.style, strength=args.strength)
        print(f"accepted: {accepted['id']}")
        if not args.wait:
            print(f"status:   {args.server}{accepted['status_url']}")
            return 0
        job = client.wait(accepted["status_url"])
        if job["status"] == "failed":
            print(f"error: {job['error']['message']} [{job['error']['code']}]", file=sys.stderr)
            return 1
        print(f"style:    {job['style']} ({job['family']})\nreason:   {job['reason']}")
        if args.output:
            args.output.write_bytes(client.download(job["result_url"]))
            print(f"portrait: {args.output}")
        else:
            print(f"portrait: {job['result_url']}")
        return 0
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_janitor_report(args: argparse.Namespace) -> int:
    from services.janitor.report import main as report

    return report()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portraits", description="AI Portraits: selfies painted like the old masters."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every stage as it runs")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="paint one photo locally (no server needed)")
    render.add_argument("photo", type=Path)
    render.add_argument("-o", "--output", type=Path, required=True)
    render.add_argument("--style", default="auto", help=STYLE_CHOICES_HELP)
    render.add_argument("--strength", type=float, default=None, help="0..1; default: the style's own")
    render.add_argument("--size", type=int, default=None, help="long side in pixels (default from settings)")
    render.set_defaults(handler=cmd_render)

    submit = commands.add_parser("submit", help="send a photo to a running server and (with --wait) fetch the portrait")
    submit.add_argument("photo", type=Path)
    submit.add_argument("--server", default="http://127.0.0.1:8080")
    submit.add_argument("--style", default="auto", help=STYLE_CHOICES_HELP)
    submit.add_argument("--strength", type=float, default=None)
    submit.add_argument(
        "--wait",
        action="store_true",
        help="follow the job's live progress (stages, queue position) until the portrait is ready; "
        "polls instead, saying so, if the gateway's event stream cannot be opened",
    )
    submit.add_argument("-o", "--output", type=Path, help="where to save the portrait (with --wait)")
    submit.set_defaults(handler=cmd_submit)

    janitor = commands.add_parser("janitor", help="privacy figures from the deletion audit")
    janitor_commands = janitor.add_subparsers(dest="janitor_command", required=True)
    report = janitor_commands.add_parser("report", help="deletions per kind and deleter, lifetimes, overdue")
    report.set_defaults(handler=cmd_janitor_report)

    styles = commands.add_parser("styles", help="list the style catalog")
    styles.set_defaults(handler=cmd_styles)

    sheet = commands.add_parser("sheet", help="render every catalog style on photos into one contact sheet")
    sheet.add_argument("photos", type=Path, nargs="+")
    sheet.add_argument("-o", "--output", type=Path, required=True)
    sheet.add_argument("--size", type=int, default=512)
    sheet.set_defaults(handler=cmd_sheet)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler  # argparse's Namespace answers Any; every subparser sets a Handler
    try:
        return handler(args)
    except PortraitError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return 1
    except RedisError as exc:
        print(f"error: Redis unreachable ({exc})", file=sys.stderr)
        return 1
    except OSError as exc:  # unreadable input, unwritable output
        print(f"error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 1
    except ValidationError as exc:  # e.g. --size out of range
        print(f"error: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
