"""The ``mlmcourse`` console script: one sub-command per module that implements it.

Each sub-command module exposes ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

GRADING_MODULES = {"nbgrader", "nbformat", "nbclient", "nh3"}
"""What the ``grade`` extra installs: every sub-command but ``train`` needs it."""

# name -> (module implementing it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("mlmcourse.train_cli", "train TinyMLM on the shipped corpus and save a checkpoint"),
    "init": ("mlmcourse.grading.cli.init", "create a course folder holding the exercises"),
    "release": ("mlmcourse.grading.cli.release", "generate the student versions of the exercises"),
    "check": ("mlmcourse.grading.cli.check", "run an exercise notebook's visible tests"),
    "grade": ("mlmcourse.grading.cli.grade", "autograde a whole class, in parallel and sandboxed"),
    "cluster": ("mlmcourse.grading.cli.cluster", "grade on a Dask cluster behind mutual TLS: "
                "certificates, scheduler, workers"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command; with ``only``, the modules of the others are not imported
    (they stay listed in ``--help``), so that ``mlmcourse init`` does not wait for PyTorch."""
    parser = argparse.ArgumentParser(
        prog="mlmcourse",
        description="Tools of the masked-language-model course: train the tiny model, "
        "release exercises, check a notebook, grade a class.",
    )
    from mlmcourse import __version__

    parser.add_argument("--version", action="version", version=f"mlmcourse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if w in SUBCOMMANDS), "")
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args._run(args))
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in GRADING_MODULES:
            raise
        print(f"mlmcourse {command}: error: this command needs the grading extra ({exc.name} "
              "is not installed): pip install 'mlmcourse[grade]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C where the sub-command has nothing more to say
        print("\nmlmcourse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
