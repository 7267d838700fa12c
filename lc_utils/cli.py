"""Train DeepLabV3 from sparse point labels outside the notebooks: ``python -m lc_utils.cli``.

The options are the fields of :class:`lc_utils.run_spec.RunSpec`, one option per field (made from
the fields themselves: their types, choices and docstrings), with
notebook 04's defaults (:meth:`~lc_utils.run_spec.RunSpec.course_defaults`, shrunk by ``LC_FAST=1`` as
there), plus a few that change how the run executes, never what it is (:data:`EXECUTION_OPTIONS`).
The command builds the run with :func:`lc_utils.runs.build_run` and writes the same run folder
as notebook 04, so notebook 05 tests a run made here, and either resumes the other's run when the
specs agree. Options may come from ``--config FILE`` (TOML or JSON; keys are the option names,
with ``_`` or ``-``; a run folder's ``run.toml`` is one); options on the command line win over
the file.

The same command trains on several GPUs (or CPU processes) under ``torchrun``, with
DistributedDataParallel; ``--batch-size`` is then the global batch, shared out among the processes::

    torchrun --nproc_per_node=4 -m lc_utils.cli --data /data/deepglobe --epochs 40
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any

import torch

from . import distributed, settings
from .checkpoints import BEST
from .devices import describe_device
from .run_spec import CHOICES, FIELD_GROUPS, NONE_TEXT, RunSpec, is_unset, read_table
from .runs import CACHE_MB, Run, build_run

EXECUTION_OPTIONS = ("config", "device", "num_workers", "cache_mb", "sync_bn", "runs_dir", "run_name",
                     "checkpoint_every", "resume")
"""The options that are no field of :class:`~lc_utils.run_spec.RunSpec`: where and how the run
executes, not what it is (``sync_bn`` matters under ``torchrun`` only)."""


def _optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if is_unset(text) else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def _option_for(name: str, hint: Any, doc: str) -> dict[str, Any]:
    """``add_argument``'s keywords for the spec field ``name`` of type ``hint``: its type (``none``
    where the field may be unset), its choices and its docstring as help, default shown."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in args
    kind = next(t for t in args if t is not type(None))
    help_text = doc.replace("%", "%%") + " (default: %(default)s)"
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction, "help": help_text}
    option: dict[str, Any] = {"type": _optional(kind) if optional else kind, "help": help_text}
    if name in CHOICES:
        option["choices"] = list(CHOICES[name])
        option["metavar"] = "{" + ",".join(NONE_TEXT if c is None else str(c) for c in CHOICES[name]) + "}"
    return option


def build_parser() -> argparse.ArgumentParser:
    """The command's options: one per field of :class:`~lc_utils.run_spec.RunSpec`, made from the
    fields' types, choices and docstrings and grouped as :data:`~lc_utils.run_spec.FIELD_GROUPS`
    says, with the current mode's defaults; then the :data:`EXECUTION_OPTIONS`."""
    spec = RunSpec.course_defaults()
    parser = argparse.ArgumentParser(
        prog="python -m lc_utils.cli", description=__doc__.split("\n\n")[0],
        epilog="Examples:\n"
               "  python -m lc_utils.cli --data /data/deepglobe --epochs 40\n"
               "  python -m lc_utils.cli --config runs.toml --seed 1\n"
               "  python -m lc_utils.cli --config runs/RUN_NAME/run.toml --epochs 40 "
               "--run-name longer\n"
               "  torchrun --nproc_per_node=2 -m lc_utils.cli --batch-size 16 --sync-bn\n"
               "Every run writes run.toml, best.pt, last.pt and history.csv to RUNS_DIR/RUN_NAME; "
               "notebook 05 reads them.", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(**spec.to_dict())
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML or JSON file of options (keys: the option names)")
    hints, docs = typing.get_type_hints(RunSpec), RunSpec.field_docs()
    for title, names in FIELD_GROUPS.items():
        group = parser.add_argument_group(title)
        for name in names:
            group.add_argument(f"--{name.replace('_', '-')}", **_option_for(name, hints[name], docs[name]))
    execution = parser.add_argument_group("execution (what the run is stays the same)")
    execution.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best there is)")
    execution.add_argument("--num-workers", type=int, default=0,
                           help="data loading processes per training process")
    execution.add_argument("--cache-mb", type=int, default=CACHE_MB,
                           help="decoded training images kept in memory")
    execution.add_argument("--sync-bn", action="store_true",
                           help="batch-norm statistics over every process's batch (several processes only)")
    execution.add_argument("--runs-dir", type=Path, metavar="DIR",
                           help="where runs go (default: runs/ in the project)")
    execution.add_argument("--run-name", help="the run's folder (default: as notebook 04 names it)")
    execution.add_argument("--checkpoint-every", type=int, default=1,
                           help="epochs between resume checkpoints")
    execution.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                           help="continue from the run's last.pt if there is one (default: yes)")
    return parser


def _read_config(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The options in a TOML or JSON file, checked against the parser's."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    known = {action.dest: action for action in parser._actions if action.dest not in ("help", "config")}
    options = {}
    for key, value in read_table(path).items():
        dest = key.replace("-", "_")
        if dest not in known:
            raise ValueError(f"{path}: unknown option {key!r}; the options are {sorted(known)}")
        action = known[dest]
        if action.type is not None and value is not None and not isinstance(value, bool):
            value = action.type(str(value))
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"{path}: {key} = {value!r} is not one of {list(action.choices)}")
        options[dest] = value
    return options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options from the command line over those of ``--config``, over the defaults for the data
    (fast mode's recipe follows the data: :func:`lc_utils.run_spec.fast_recipe`)."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    config = _read_config(first.config, parser) if first.config is not None else {}
    data = first.data if first.data is not None else config.get("data")
    parser.set_defaults(**{**RunSpec.course_defaults(data=data).to_dict(), **config})
    return parser.parse_args(argv)


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """The run the options describe: every field of :class:`~lc_utils.run_spec.RunSpec` from its option."""
    return RunSpec.from_dict({name: value for name, value in vars(args).items()
                              if name not in EXECUTION_OPTIONS}, "the options")


def train(args: argparse.Namespace) -> Path:
    """Build the run the options describe (:func:`lc_utils.runs.build_run`), train it as notebook 04
    does and return the run folder."""
    device = distributed.init_from_env()
    if args.device is not None:
        device = torch.device(args.device)
    say = print if distributed.is_main() else (lambda *_, **__: None)
    spec = spec_from_args(args)
    run: Run = build_run(spec, runs_dir=args.runs_dir, num_workers=args.num_workers, cache_mb=args.cache_mb)
    if args.sync_bn and distributed.active():
        run.model = distributed.sync_batchnorm(run.model, device)
    processes = distributed.world_size()
    say(f"{describe_device() if processes == 1 else f'{processes} processes on {device.type}'}")
    points = ("dense masks" if run.annotations is None
              else f"{run.points_per_image:,.0f} points per training image")
    say(f"data {run.root}: {', '.join(f'{k} {len(v)}' for k, v in run.split.items())} images; {points}")
    say(f"global batch {spec.batch_size} = {processes} x {spec.batch_size // processes}; "
        f"{len(run.train_loader)} steps per epoch, {spec.epochs} epochs")
    run_dir = settings.run_folder(run.root, args.runs_dir, args.run_name)
    say(f"run folder {run_dir}")
    history = run.train(run_dir, resume=args.resume, checkpoint_every=args.checkpoint_every, device=device)
    if history and "val_mean_iou" in history[-1]:
        best = max(r["val_mean_iou"] for r in history)
        on = "" if run.val_points is None else " on the held-out points"
        say(f"best validation mIoU{on} {best:.3f}; weights in {run_dir / BEST}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """Run the command; bad input (a missing folder or file, an unknown option in the config, a
    value a run cannot have, a batch that does not divide among the processes, a file that cannot
    be read) exits with status 2 and one line saying why."""
    try:
        train(parse_args(argv))
    except (OSError, ValueError, OverflowError) as error:
        print(f"python -m lc_utils.cli: error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
