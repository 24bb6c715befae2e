"""The `toolgym` command line. Each part adds its own subcommands; this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap

EPILOG = """\
examples:
  toolgym doctor                       # what works here, and the fix for what does not
  toolgym sandbox setup                # start a Docker engine (root on Debian) and build the image
  toolgym demo                         # the end-to-end demo on an embedded default
"""


OPTIONAL_MODEL_DEPS = {"torch", "safetensors", "tokenizers", "numpy", "toolgym.model.cli"}


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(subparsers, name: str, help: str, example: str, func) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with an example."""
    p = subparsers.add_parser(
        name,
        help=help,
        description=help,
        formatter_class=_formatter,
        epilog="example:\n" + textwrap.indent(example.strip(), "  "),
    )
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolgym",
        description="Agentic task synthesis and sandboxed tool environments.",
        formatter_class=_formatter,
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (
        "toolgym.commands.doctor",
        "toolgym.commands.sandbox",
        "toolgym.commands.envs",
        "toolgym.commands.synth",
        "toolgym.commands.serve",
        "toolgym.commands.rollout",
        "toolgym.commands.evaluate",
        "toolgym.commands.view",
        "toolgym.commands.export",
        "toolgym.commands.train",
        "toolgym.commands.demo",
        "toolgym.model.cli",
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if module == "toolgym.model.cli" and exc.name in OPTIONAL_MODEL_DEPS:
                continue  # the model part needs the optional [model] extra
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from toolgym.sandbox.errors import SandboxUnavailable

    try:
        return args.func(args) or 0
    except (SandboxUnavailable, ValueError, FileNotFoundError) as exc:
        # Errors a user can cause: one sentence, no traceback (TOOLGYM_DEBUG=1 shows it).
        if os.environ.get("TOOLGYM_DEBUG"):
            raise
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("toolgym: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
