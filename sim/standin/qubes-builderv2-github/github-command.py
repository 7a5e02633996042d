#!/usr/bin/python3
"""Stand-in of qubes-builderv2-github's github-command.py (qubes-sim): the `action` entry point.

Same arguments as the real one; `qubesbuilder` comes from PYTHONPATH (the qubes-builderv2
checkout), `githubbuilder` from next to this file.
"""
import argparse
import sys
import traceback
from pathlib import Path


def parser():
    p = argparse.ArgumentParser(description="Qubes Builder GitHub automation tool (qubes-sim stand-in).")
    sub = p.add_subparsers(required=True, dest="mode")
    d = sub.add_parser("dispatch")
    d.add_argument("rest", nargs="*")
    a = sub.add_parser("action")
    who = a.add_mutually_exclusive_group(required=True)
    who.add_argument("--no-signer-github-command-check", action="store_true")
    who.add_argument("--signer-fpr")
    a.add_argument("--dry-run", action="store_true")
    a.add_argument("--state-dir", type=Path, default=Path.home() / "github-notify-state")
    a.add_argument("--local-log-file")
    s = a.add_subparsers(dest="subcommand", required=True)
    for name, args in (
        ("build-component", ["component_name"]),
        ("upload-component", ["component_name", "commit_sha", "repository_publish"]),
        ("build-template", ["template_name", "template_timestamp"]),
        ("upload-template", ["template_name", "template_sha", "repository_publish"]),
        ("build-iso", ["iso_version", "iso_timestamp"]),
    ):
        c = s.add_parser(name)
        c.add_argument("builder_dir", type=Path)
        c.add_argument("builder_conf")
        for arg in args:
            c.add_argument(arg)
        if name == "upload-component":
            c.add_argument("--distribution", nargs="+", default=[])
        if name == "build-iso":
            c.add_argument("--final", action="store_true")
    return p


def main():
    args = parser().parse_args()
    if args.mode == "dispatch":
        print("github-command.py: this stand-in only implements `action`", file=sys.stderr)
        return 2
    from githubbuilder.action import run_action  # imports qubesbuilder from PYTHONPATH
    return run_action(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # as the real one: trace, then exit 1
        traceback.print_exc()
        print(f"github-command: {e}", file=sys.stderr)
        sys.exit(1)
