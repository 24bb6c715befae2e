"""`toolgym view`: a run's episodes as one static HTML page (list, filters, search, each episode in full)."""

from __future__ import annotations


def run(args) -> int:
    from toolgym.agent.viewer import build_view

    try:
        page = build_view(args.run, args.out, compare=args.compare)
    except OSError as exc:  # a read-only or full disk: say where, the run itself is untouched
        raise ValueError(f"cannot write the viewer: {exc.strerror or exc}; pass --out.") from exc
    print(page)
    return 0


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = add_command(
        sub,
        "view",
        "Write a run's trajectory viewer: one HTML page that opens from disk (no server), printed at the end.",
        "toolgym rollout reference --policy oracle --backend inprocess --out runs/oracle\n"
        "toolgym rollout reference --policy random --backend inprocess --out runs/random\n"
        "toolgym view runs/random                          # runs/random/view/index.html\n"
        "toolgym view runs/random --compare runs/oracle    # side by side, 'flipped' filter",
        run,
    )
    p.add_argument("run", help="a run folder written by `toolgym rollout`")
    p.add_argument(
        "--compare", metavar="RUN2", help="a second run: episodes of the same (task, sample) side by side"
    )
    p.add_argument(
        "--out",
        metavar="FOLDER",
        help="the folder the page goes into (default RUN/view, or RUN/view-vs-NAME with --compare); "
        "replaced whole on every build",
    )
