"""The `rlvr` commands for study workspaces (see `rlvr.workspace`):

    rlvr init DIR --base PATH --tuned NAME=PATH --prompts FILE [...]   a workspace for your pair
    rlvr pipeline [DIR] [--check]          (re)write DIR's dvc.yaml and prefect.yaml
    rlvr params [DIR]                      every knob of DIR's study with the value stages use
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from rlvr.config import PARAMS_FILE


def cmd_init(args: argparse.Namespace) -> None:
    from rlvr.workspace import init_workspace

    ws = init_workspace(args.directory, args.base, args.tuned, args.prompts, args.grader,
                        args.labeller, args.checkpoint, args.sft or "", args.train_prompts or "",
                        args.dtype or "", args.device or "", args.chat_template,
                        args.backend or "", args.weighted, args.set)
    from rlvr.pipeline import REPO

    print(f"wrote {ws}/params.yaml, dvc.yaml, prefect.yaml\n"
          f"run it:  cd {ws} && dvc repro     (or, as one Prefect run tree: python -m "
          f"flows.reproduce --repo {ws})\nquery:   rlvr --data {ws}/data sql \"select ...\"\n"
          f"deploy:  cd {REPO} && prefect --no-prompt deploy --all --prefect-file "
          f"{ws.resolve()}/prefect.yaml   (with `make serve` running)")


def cmd_pipeline(args: argparse.Namespace) -> None:
    from rlvr.workspace import write_pipeline

    stale = write_pipeline(args.directory, check=args.check)
    if args.check:
        if stale:
            raise ValueError(f"{', '.join(map(str, stale))} out of date with the stage registry "
                             f"and params.yaml: run `rlvr pipeline {args.directory}`")
        print("dvc.yaml and prefect.yaml are up to date")
    else:
        print("\n".join(f"wrote {p}" for p in stale) or "up to date")


def cmd_params(args: argparse.Namespace) -> None:
    from rlvr.sections import full_params
    from rlvr.study import load_study

    study = load_study(Path(args.directory) / PARAMS_FILE)
    sys.stdout.write(yaml.safe_dump(full_params(study), sort_keys=False, width=100))


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The workspace commands, on the `rlvr` parser's subcommands."""
    p = sub.add_parser("init", help="a study workspace for your own model pair")
    p.add_argument("directory", help="the new workspace folder")
    p.add_argument("--base", required=True,
                   help="base model: a directory, or a hub id pinned as org/name@REVISION")
    p.add_argument("--tuned", action="append", required=True, metavar="NAME=PATH",
                   help="an RL-tuned model (repeatable; the first is the study's RL model)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="STEP=PATH",
                   help="an RL checkpoint of the first tuned model (repeatable)")
    p.add_argument("--sft", metavar="NAME=PATH", help="an SFT control from the same base")
    p.add_argument("--prompts", required=True,
                   help="prompt file: .jsonl or .parquet with `prompt` and `answer`")
    p.add_argument("--train-prompts", help="training prompts (only for --weighted)")
    p.add_argument("--grader", default="math", help="math (boxed), answer (`Answer: N`), toy")
    p.add_argument("--labeller", default="answer", help="answer, none, steps or digits")
    p.add_argument("--dtype", help="fp32, bf16 or fp16 (default fp32)")
    p.add_argument("--device", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=None,
                   help="wrap prompts in the tokenizer's chat template (default: when it has one)")
    p.add_argument("--backend", help="hf (default) or vllm for sampling")
    p.add_argument("--weighted", action="store_true",
                   help="also the divergence-weighted advantage runs (train from your base)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="any other knob (YAML value), e.g. sample.max_new_tokens=1024")
    p.set_defaults(run=cmd_init, warehouse=False)
    p = sub.add_parser("pipeline", help="(re)write a workspace's dvc.yaml and prefect.yaml")
    p.add_argument("directory", nargs="?", default=".")
    p.add_argument("--check", action="store_true", help="only say whether they are stale")
    p.set_defaults(run=cmd_pipeline, warehouse=False)
    p = sub.add_parser("params", help="every knob of a workspace's study, as stages see it")
    p.add_argument("directory", nargs="?", default=".")
    p.set_defaults(run=cmd_params, warehouse=False)
