"""Train DeepLabV3 from sparse point labels outside the notebooks: ``python -m lc_utils.train``.

The options are notebook 04's parameters, with its defaults (shrunk by ``LC_FAST=1`` as there),
and the command writes the same run folder, so notebook 05 tests a run made here. Options may come
from ``--config FILE`` (TOML or JSON; keys are the option names, with ``_`` or ``-``); options on
the command line win over the file.

The same command trains on several GPUs (or CPU processes) under ``torchrun``, with
DistributedDataParallel; ``--batch-size`` is then the global batch, shared out among the processes::

    torchrun --nproc_per_node=4 -m lc_utils.train --data /data/deepglobe --epochs 40
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import datasets, distributed, models, settings, sparse, training
from .losses import PartialCrossEntropyLoss, class_weights_from_counts, prior_correction

LOSS_WEIGHTS = ("none", "inverse-sqrt")


def _none_or_int(text: str) -> int | None:
    return None if text.lower() in ("none", "") else int(text)


def build_parser() -> argparse.ArgumentParser:
    """The command's options, with notebook 04's defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m lc_utils.train", description=__doc__.split("\n\n")[0],
        epilog="Examples:\n"
               "  python -m lc_utils.train --data /data/deepglobe --epochs 40\n"
               "  python -m lc_utils.train --config runs.toml --seed 1\n"
               "  torchrun --nproc_per_node=2 -m lc_utils.train --batch-size 16 --sync-bn\n"
               "Every run writes best.pt, last.pt and history.csv to RUNS_DIR/RUN_NAME; "
               "notebook 05 reads them.", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML or JSON file of options (keys: the option names)")
    data = parser.add_argument_group("data and labels")
    data.add_argument("--data", type=Path, metavar="DIR",
                      help="dataset folder (default: $DATA_DIR, else the generated sample)")
    data.add_argument("--schema", metavar="NAME|FILE",
                      help="class schema: deepglobe, loveda, potsdam, vaihingen or a schema file "
                           "(default: $DATA_SCHEMA, else read from the data folder, as in the notebooks)")
    data.add_argument("--annotations", type=Path, metavar="FILE",
                      help="a point annotation file to train on (default: made from --strategy and "
                           "--points-per-mp, as in notebook 03, and saved under RUNS_DIR/annotations)")
    data.add_argument("--strategy", default="uniform", choices=list(sparse.STRATEGIES),
                      help="how points are drawn (default: %(default)s)")
    data.add_argument("--points-per-mp", type=float, default=1500,
                      help="labelled points per megapixel (default: %(default)s)")
    data.add_argument("--cache-mb", type=int, default=2048, help="decoded training images kept in memory")
    data.add_argument("--num-workers", type=int, default=0,
                      help="data loading processes per training process")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default=settings.pick("resnet50", "mobilenet_v3_large"),
                       choices=list(models.BACKBONES), help="(default: %(default)s)")
    model.add_argument("--weights", default="imagenet",
                       help='"imagenet", "coco", "none" or a local weights file (default: %(default)s)')
    model.add_argument("--sync-bn", action="store_true",
                       help="batch-norm statistics over every process's batch (several processes only)")
    run = parser.add_argument_group("training")
    run.add_argument("--crop", type=int, default=settings.pick(256, 128), help="training crop size")
    run.add_argument("--batch-size", type=int, default=8,
                     help="global batch size: under torchrun, divided among the processes (default: 8)")
    run.add_argument("--epochs", type=int, default=20)
    run.add_argument("--samples-per-epoch", type=_none_or_int, default=settings.pick(None, 160),
                     help="crops per epoch; none: every training image once")
    run.add_argument("--lr", type=float, default=settings.pick(1e-3, 2e-3))
    run.add_argument("--weight-decay", type=float, default=1e-4)
    run.add_argument("--schedule", default="cosine", choices=["cosine", "poly", "none"])
    run.add_argument("--warmup-steps", type=int, default=30)
    run.add_argument("--loss-weights", default="none", choices=list(LOSS_WEIGHTS),
                     help="class weights of the partial cross-entropy from the point counts")
    run.add_argument("--prior-correction", action="store_true",
                     help="logit adjustment for points whose class shares differ from the pixels' "
                          "(notebook 06)")
    run.add_argument("--label-smoothing", type=float, default=0.0)
    run.add_argument("--val-window", type=int, default=512, help="validation window size")
    run.add_argument("--val-windows", type=int, default=settings.pick(64, 16),
                     help="fixed validation windows scored every epoch")
    run.add_argument("--seed", type=int, default=0, help="split, points, weights and crops")
    run.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best there is)")
    out = parser.add_argument_group("run folder")
    out.add_argument("--runs-dir", type=Path, metavar="DIR",
                     help="where runs go (default: runs/ in the project)")
    out.add_argument("--run-name", help="the run's folder (default: as notebook 04 names it)")
    out.add_argument("--checkpoint-every", type=int, default=1, help="epochs between resume checkpoints")
    out.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                     help="continue from the run's last.pt if there is one (default: yes)")
    return parser


def _read_config(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The options in a TOML or JSON file, checked against the parser's."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            import tomllib

            values = tomllib.loads(text)
    except (ValueError, ImportError) as error:
        raise ValueError(f"{path}: not a readable {'JSON' if path.suffix == '.json' else 'TOML'} file "
                         f"({error})") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a table of options")
    known = {action.dest: action for action in parser._actions if action.dest not in ("help", "config")}
    options = {}
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in known:
            raise ValueError(f"{path}: unknown option {key!r}; the options are {sorted(known)}")
        action = known[dest]
        if action.type is not None and value is not None and not isinstance(value, bool):
            value = action.type(str(value)) if action.type is not _none_or_int else _none_or_int(str(value))
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"{path}: {key} = {value!r} is not one of {list(action.choices)}")
        options[dest] = value
    return options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options from the command line over those of ``--config``, over the defaults."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config is not None:
        parser.set_defaults(**_read_config(first.config, parser))
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.epochs < 1:
        parser.error("--batch-size and --epochs must be at least 1")
    return args


def _loss(args: argparse.Namespace, annotations: dict, train_pairs: list, schema) -> PartialCrossEntropyLoss:
    counts = sparse.point_counts(annotations, schema.num_classes)
    weight = None
    if args.loss_weights == "inverse-sqrt":
        weight = class_weights_from_counts(torch.as_tensor(counts))
    adjustment = None
    if args.prior_correction:
        pixels = datasets.class_statistics(train_pairs, schema)["pixels"].to_numpy()
        adjustment = prior_correction(counts, pixels)
    return PartialCrossEntropyLoss(weight=weight, label_smoothing=args.label_smoothing,
                                   logit_adjustment=adjustment)


def train(args: argparse.Namespace) -> Path:
    """Train as notebook 04 does; return the run folder."""
    device = distributed.init_from_env()
    if args.device is not None:
        device = torch.device(args.device)
    say = print if distributed.is_main() else (lambda *_, **__: None)
    root = datasets.prepare_data(args.data)
    schema = datasets.load_schema(root, args.schema)
    split = datasets.split_pairs(datasets.find_pairs(root), seed=args.seed)
    runs = settings.runs_dir(args.runs_dir)
    shapes = datasets.image_shapes(split["train"])
    if args.annotations is not None:
        annotations = sparse.load_annotations(args.annotations, schema, shapes)
        missing = sorted(set(shapes) - set(annotations))
        if missing:
            raise ValueError(f"{args.annotations}: no points for {len(missing)} training images "
                             f"(e.g. {missing[:3]})")
    else:
        name = sparse.annotation_filename(args.strategy, points_per_mp=args.points_per_mp, seed=args.seed)
        path = runs / "annotations" / settings.dataset_tag(root) / name
        if distributed.is_main():  # one process writes the file, the others read it
            annotations = sparse.ensure_annotations(path, split["train"], points_per_mp=args.points_per_mp,
                                                    strategy=args.strategy, seed=args.seed, schema=schema)
        if distributed.active():
            torch.distributed.barrier()
        if not distributed.is_main():
            annotations = sparse.load_annotations(path, schema, shapes)
    train_set = datasets.SparseLandCoverDataset(split["train"], annotations, schema,
                                                datasets.make_transforms(args.crop), cache_mb=args.cache_mb)
    val_set = datasets.WindowDataset(datasets.DenseLandCoverDataset(split["val"], schema), args.val_window,
                                     args.val_windows, seed=args.seed)
    train_loader = training.make_loader(train_set, args.batch_size, shuffle=True,
                                        num_workers=args.num_workers,
                                        samples_per_epoch=args.samples_per_epoch, seed=args.seed)
    val_loader = training.make_loader(val_set, 1, shuffle=False)
    processes = distributed.world_size()
    say(f"{settings.describe_device() if processes == 1 else f'{processes} processes on {device.type}'}")
    say(f"data {root}: {', '.join(f'{k} {len(v)}' for k, v in split.items())} images; "
        f"{np.mean([len(a) for a in annotations.values()]):,.0f} points per training image")
    say(f"global batch {args.batch_size} = {processes} x {args.batch_size // processes}; "
        f"{len(train_loader)} steps per epoch, {args.epochs} epochs")

    settings.seed_everything(args.seed)
    weights = None if str(args.weights).lower() == "none" else args.weights
    model = models.build_deeplabv3(schema.num_classes, args.backbone, weights)
    if args.sync_bn and distributed.active():
        model = distributed.sync_batchnorm(model, device)
    run_dir = runs / (args.run_name or training.default_run_name(root))
    say(f"run folder {run_dir}")
    # The keys notebook 04 records, so that either can resume a run of the other.
    config = {"backbone": args.backbone, "weights": str(weights),
              "points_per_mp": args.points_per_mp if args.annotations is None else str(args.annotations),
              "strategy": args.strategy, "crop": args.crop, "batch_size": args.batch_size,
              "samples_per_epoch": args.samples_per_epoch, "val_windows": args.val_windows}
    defaults = build_parser()
    for option in ("loss_weights", "prior_correction", "label_smoothing"):
        if getattr(args, option) != defaults.get_default(option):  # notebook 04 does not record these
            config[option] = getattr(args, option)
    history = training.fit(
        model, train_loader, epochs=args.epochs, val_loader=val_loader, lr=args.lr,
        weight_decay=args.weight_decay, schedule=None if args.schedule == "none" else args.schedule,
        warmup_steps=args.warmup_steps, seed=args.seed, run_dir=run_dir, resume=args.resume,
        checkpoint_every=args.checkpoint_every, device=device,
        loss_fn=_loss(args, annotations, split["train"], schema), config=config, progress=True)
    if history and "val_mean_iou" in history[-1]:
        say(f"best validation mIoU {max(r['val_mean_iou'] for r in history):.3f}; "
            f"weights in {run_dir / training.BEST}")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """Run the command; bad input (a missing folder or file, an unknown option in the config, a
    batch that does not divide among the processes) exits with status 2 and one line saying why."""
    try:
        train(parse_args(argv))
    except (FileNotFoundError, ValueError) as error:
        print(f"python -m lc_utils.train: error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
