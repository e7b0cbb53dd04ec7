"""Catalogue of realistic mistakes: every bad setting, data file and model directory gets one clear line naming the
culprit before any result-like file is written. (The post-training tools have theirs in test_bad_tools.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from ftlab.core.checks import FtlabError
from ftlab.train import train
from tests.helpers import CONF_DIR, compose, make_tiny_conll, tiny_overrides

RESULTS = ("metrics.json", "model", "checkpoints", "plan.json", "onnx")


def nothing_result_like(out) -> bool:
    return not any((out / name).exists() for name in RESULTS)


def refused(overrides: list[str], out) -> str:
    """Run the job in-process; it must raise one FtlabError (run.py prints it as `ftlab: <line>`, exit 1)."""
    with pytest.raises(FtlabError) as err:
        train(compose(overrides))
    message = str(err.value)
    assert "\n" not in message, message
    assert nothing_result_like(out), sorted(p.name for p in out.iterdir())
    return message


SETTINGS = {
    # option names: typos and options the chosen strategy does not have are errors, never ignored
    "strategy=partial ++strategy.trainable_layer=2":
        "strategy.trainable_layer: unknown option of strategy partial; valid: frozen_dropout, lr_grid, name, "
        "train_embeddings, train_head, trainable_layers; did you mean trainable_layers",
    "strategy=head_only ++strategy.train_head=false":
        "strategy.train_head: unknown option of strategy head_only; valid: frozen_dropout, lr_grid, name",
    "++seeed=1": "seeed: unknown option of ftlab's config",
    "++model.revison=main": "model.revison: unknown option of the model group",
    "++data.text_colum=body": "data.text_colum: unknown option of the data group",
    "++trainer.max_step=3": "trainer.max_step: unknown option of lightning.Trainer",
    "++callbacks.early_stopping.patients=2": "callbacks.early_stopping.patients: unknown option of "
                                             "lightning.pytorch.callbacks.EarlyStopping",
    "++scheduler.warmup=0.1": "scheduler.warmup: unknown option of the scheduler",
    "++optimizer.layer_decay=0.8": "; layer-wise LR decay is the top-level layer_decay",
    "++optimizer.momentun=0.9": "optimizer.momentun: unknown option of torch.optim.AdamW",
    # contradictions
    "monitor=val/loss monitor_mode=max": "monitor_mode='max': val/loss is better when lower: max would keep the "
                                         "worst checkpoint; valid: min",
    "monitor=val/f1 monitor_mode=min": "monitor_mode='min': val/f1 is better when higher",
    "strategy=partial strategy.trainable_layers=0 strategy.train_head=false": "selects no parameter to train",
    "data.val_size=0.6 data.test_size=0.5": "val_size + test_size = 1.1 leaves no training data",
    # values
    "max_length=100": "max_length=100: the model has 64 positions; valid: 1..64",
    "lr=0": "lr=0: must be a positive float",
    "optimizer.lr=-1": "optimizer.lr=-1: must be a positive float",
    "lr=inf": "lr=inf: must be a positive float, and finite",
    "seed=-1": "seed=-1: must be an integer in 0..4294967295 (what numpy and Lightning can seed)",
    "trainer.max_epochs=0": "trainer.max_epochs=0: must be an integer >= 1 or -1 or null",
    "++trainer.overfit_batches=1": "trainer.overfit_batches=1: it validates and tests on training batches, so val/ "
                                   "and test/ metrics would be training metrics; valid: 0 (or absent)",
    "++trainer.fast_dev_run=true": "trainer.fast_dev_run=True: it runs a batch or two with no checkpoint or logger",
    "layer_decay=0": "layer_decay=0: must be a fraction in (0, 1]",
    "batch_size=0": "batch_size=0: must be a positive int",
    "seed=forty": "seed='forty': must be an integer",
    "task=summarization": "task='summarization': unknown value; valid choices",
    "scheduler.warmup_ratio=1.5": "scheduler.warmup_ratio=1.5: must be a fraction in [0, 1)",
    "strategy=partial strategy.trainable_layers=5": "the model has only 2 layers; valid: -2..2",
    "strategy=pattern strategy.train=[classifer]": "'classifer' matches no parameter; closest names: classifier",
    "strategy=gradual_unfreezing strategy.unit=batch":
        "strategy.unit='batch': unknown value; valid choices: epoch, step",
    "data.group_by_length=yes": "data.group_by_length='yes': must be true or false",
    "strategy=partial strategy.frozen_dropout=0": "strategy.frozen_dropout=0: must be true or false",
    "strategy=partial strategy.frozen_dropout=true cache_frozen=true":
        "cache_frozen=True: needs strategy.frozen_dropout=false: with dropout in the frozen modules",
    "strategy=full strategy.frozen_dropout=false cache_frozen=true":
        "cache_frozen=true: strategy full trains the embeddings or the lowest block, so there is no frozen prefix",
    "strategy=partial cache_frozen=true trainer.strategy=fsdp": "cache_frozen=True: trainer.strategy='fsdp' is not "
                                                                "supported with the cache",
    "strategy=gradual_unfreezing strategy.frozen_dropout=false cache_frozen=true":
        "gradual_unfreezing trains every block eventually",
    "cache_frozen_memory=lots": "cache_frozen_memory='lots': must be a memory size > 0 such as 4GB",
    "model.compile=yes": "model.compile='yes': must be true or false",
    "model.compile=true strategy=partial cache_frozen=true": "model.compile=True: not with cache_frozen=true",
    "data.encoding_errors=ignore": "data.encoding_errors='ignore': unknown value; valid choices: strict, replace",
    # hardware
    "trainer.precision=16-mixed": "float16 training needs a CUDA GPU",
    f"trainer.devices={(os.cpu_count() or 1) + 1}": f"this machine has {os.cpu_count()} CPU core(s); valid: 1..",
}


@pytest.mark.parametrize("override", list(SETTINGS))
def test_bad_setting(override, tiny_model_dir, tiny_csv, tmp_path):
    message = refused(tiny_overrides(tiny_model_dir, tiny_csv, tmp_path, *override.split()), tmp_path)
    assert SETTINGS[override] in message


def test_unwritable_output_directory(tiny_model_dir, tiny_csv, tmp_path, small_disk):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(FtlabError, match=f"output_dir=.*: {blocker} is not a directory; choose another"):
        train(compose(tiny_overrides(tiny_model_dir, tiny_csv, blocker / "job")))
    disk = small_disk(4096, read_only=True)  # root writes through permissions, not onto a read-only mount
    with pytest.raises(FtlabError) as err:
        train(compose(tiny_overrides(tiny_model_dir, tiny_csv, disk / "job")))
    assert str(err.value) == (f"output_dir='{disk / 'job'}': {disk} is not a writable directory (read-only file "
                              "system); choose another hydra.run.dir / output_dir")


# -- data files ---------------------------------------------------------------------------------------------------

def _csv(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


GOOD_ROWS = "".join(f"goal match team {i},sport\nbread soup cheese {i},food\n" for i in range(12))

DATA_FILES = {
    "empty.csv": ("", "empty.csv: the file is empty"),
    "header_only.csv": ("text,label\n", "header_only.csv: no rows"),
    "duplicates.csv": ("text,label\n" + "same text,sport\n" * 30 + "other text,food\n" * 30,
                       "split is empty after removing duplicates"),
    "latin1.csv": (b"text,label\ngoal match,sport\ncaf\xe9 soup,food\n" + GOOD_ROWS.encode(),
                   "latin1.csv:3: not UTF-8 text (byte 0xe9)"),
    "quote.csv": ('text,label\ngoal match,sport\n"an unterminated quote,food\n' + GOOD_ROWS,
                  "quote.csv: malformed CSV (Error tokenizing data"),
    "fields.csv": ("text,label\ngoal match,sport,extra,fields\n" + GOOD_ROWS,
                   "fields.csv: malformed CSV at line 2: expected 2 fields"),
    "broken.jsonl": ('{"text": "goal match", "label": "sport"}\n{"text": "soup", "label": \n',
                     "broken.jsonl:2: not valid JSON"),
    "list.jsonl": ('{"text": "goal match", "label": "sport"}\n["soup", "food"]\n',
                   "list.jsonl: line 2 is list, not a JSON object"),
    "array.json": ('[{"text": "goal match", "label": "sport"},\n {"text": "soup" "label": "food"}]',
                   "array.json:2: not valid JSON"),
    "no_labels.csv": ("text,label\n" + "".join(f"text {i},\n" for i in range(20)),
                      "no_labels.csv: no row has both a text (text) and a label (label)"),
}


def test_two_spellings_of_one_number_are_one_class_and_refused(tiny_model_dir, tmp_path):
    """1 and 1.0 are one class, as training reads them: never a one-class "classifier"."""
    data = _csv(tmp_path / "one_class.csv", "text,label\n" + "".join(f"text {i},{['1', '1.0'][i % 2]}\n"
                                                                    for i in range(20)))
    out = tmp_path / "job"
    message = refused(tiny_overrides(tiny_model_dir, data, out), out)
    assert message == "data.label_column='label': found 1 class(es); classification needs at least 2"


@pytest.mark.parametrize("name", list(DATA_FILES))
def test_bad_data_file(name, tiny_model_dir, tmp_path):
    text, expected = DATA_FILES[name]
    data = _csv(tmp_path / name, text)
    out = tmp_path / "job"
    message = refused(tiny_overrides(tiny_model_dir, data, out), out)
    assert expected in message
    assert name in message or "split" in message


def test_label_seen_only_in_the_test_file(tiny_model_dir, tmp_path):
    train_csv = _csv(tmp_path / "train.csv", "text,label\n" + GOOD_ROWS)
    test_csv = _csv(tmp_path / "test.csv", "text,label\nlaptop chip server,tech\nmatch coach,sport\n")
    out = tmp_path / "job"
    message = refused(tiny_overrides(tiny_model_dir, train_csv, out, f"data.test_path={test_csv}"), out)
    assert message.startswith("data.test_path: label(s) 'tech' never occur in the training data")


def test_test_file_that_is_the_training_file(tiny_model_dir, tiny_csv, tmp_path):
    out = tmp_path / "job"
    message = refused(tiny_overrides(tiny_model_dir, tiny_csv, out, f"data.test_path={tiny_csv}"), out)
    assert message.startswith("every training text also appears in data.val_path / data.test_path")


def test_validation_and_test_files_that_overlap(tiny_model_dir, tiny_csv, tmp_path):
    held = _csv(tmp_path / "held.csv", "text,label\ngoal match coach,sport\nsoup bread,food\n")
    out = tmp_path / "job"
    message = refused(tiny_overrides(tiny_model_dir, tiny_csv, out, f"data.val_path={held}",
                                     f"data.test_path={held}"), out)
    assert message.startswith("data.val_path and data.test_path share 2 text(s)")


def test_empty_labels_are_dropped_with_a_warning_never_a_nan_class(tiny_model_dir, tmp_path, caplog):
    data = _csv(tmp_path / "gaps.csv", "text,label\n" + GOOD_ROWS + "a text without label,\n,sport\n")
    metrics = train(compose(tiny_overrides(tiny_model_dir, data, tmp_path / "job", "debug=smoke")))
    assert metrics["test/confusion_matrix"]["labels"] == ["food", "sport"]
    assert "gaps.csv: 2 row(s) with an empty text or label dropped (lines 26, 27)" in caplog.text


def test_numeric_labels_with_a_gap_keep_their_names(tiny_model_dir, tmp_path):
    rows = "".join(f"goal match team {i},1\nbread soup cheese {i},2\n" for i in range(12))
    data = _csv(tmp_path / "numeric.csv", "text,label\n" + rows + "orphan text,\n")
    metrics = train(compose(tiny_overrides(tiny_model_dir, data, tmp_path / "job", "debug=smoke")))
    assert metrics["test/confusion_matrix"]["labels"] == ["1", "2"]  # not "1.0", "2.0"


SPELLING = "valid: one consistent spelling per class"
DISTINCT = " (or data.label_case=distinct if they are different classes)"

ONE_LINE_DATA = {  # file: (content, the whole message after "<path>")
    "case.csv": ("text,label\n" + GOOD_ROWS + "team coach,Sport\n",
                 ": labels 'Sport' and 'sport' differ only in case; " + SPELLING + DISTINCT),
    "spaces.csv": ("text,label\n" + GOOD_ROWS + "team coach, sport\n",
                   ": labels ' sport' and 'sport' differ only in surrounding white space; " + SPELLING),
    "case.jsonl": ("".join(json.dumps({"text": text, "label": label}) + "\n" for line in GOOD_ROWS.splitlines()
                           for text, label in [line.split(",")]) + '{"text": "team coach", "label": "Food"}\n',
                   ": labels 'Food' and 'food' differ only in case; " + SPELLING + DISTINCT),
    "header.csv": ("text,label,label\n" + GOOD_ROWS.replace("\n", ",food\n"),
                   ":1: the header names column(s) 'label' more than once, and only the first would be read; valid: "
                   "every column the job reads named once"),
    "two_labels.csv": ("text,label\n" + GOOD_ROWS + "goal match team 3,food\n",
                       ": lines 8 and 26 have the same text ('goal match team 3') but labels 'sport' and 'food'; "
                       "valid: one label per text (correct or remove one of them)"),
}


@pytest.mark.parametrize("name", list(ONE_LINE_DATA))
def test_bad_labels_and_columns(name, tiny_model_dir, tmp_path):
    """Problems found when the config is checked are named with their data key; the rest with the file only."""
    content, expected = ONE_LINE_DATA[name]
    data = _csv(tmp_path / name, content)
    out = tmp_path / "job"
    prefix = "" if name == "two_labels.csv" else "data.path: "
    assert refused(tiny_overrides(tiny_model_dir, data, out), out) == f"{prefix}{data}{expected}"


def _label_folder(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    root.mkdir(exist_ok=True)
    return root


def test_label_folder_without_class_sub_folders(tiny_model_dir, tmp_path):
    docs = _label_folder(tmp_path / "docs", {".ipynb_checkpoints/1-checkpoint.txt": "goal match", "a.txt": "soup"})
    out = tmp_path / "job"
    message = refused(tiny_overrides(tiny_model_dir, docs, out, "data.source=folder"), out)
    assert message == (f"data.path: {docs}: no class sub-folders; valid: one sub-folder per class, named by its label, "
                       "holding that class's text files (e.g. sport/001.txt)")


def test_label_folder_junk_is_no_class(tiny_model_dir, tmp_path):
    docs = _label_folder(tmp_path / "docs", {"sport/1.txt": "goal match", "sport/.DS_Store": "\x00",
                                             ".ipynb_checkpoints/1-checkpoint.txt": "goal match",
                                             "__MACOSX/sport/._1.txt": "\x00", "Thumbs.db": "\x00"})
    out = tmp_path / "job"
    message = refused(tiny_overrides(tiny_model_dir, docs, out, "data.source=folder"), out)
    assert message == "data.label_column='label': found 1 class(es); classification needs at least 2"


def test_bbc_strict_encoding_names_the_latin1_article(tmp_path):
    out = tmp_path / "job"
    message = refused(["data.encoding_errors=strict", f"output_dir={out}", "logger=none",
                       f"data.cache_dir={tmp_path}/cache"], out)
    assert "sports/199.txt:" in message and "not UTF-8 text (byte 0xa3)" in message


def test_conll_line_without_a_tag(tiny_model_dir, tmp_path):
    conll = make_tiny_conll(tmp_path / "ok.conll")
    bad = tmp_path / "bad.conll"
    bad.write_text(conll.read_text().replace("\n\n", "\nlonely\n\n", 1))
    out = tmp_path / "job"
    lineno = bad.read_text().splitlines().index("lonely") + 1
    message = refused(ner_overrides(tiny_model_dir, bad, out), out)
    assert message == f"{bad}:{lineno}: 'lonely' is not '<token> ... <tag>' with a BIO tag (O, B-<type>, I-<type>)"


def test_conll_tag_that_is_not_bio(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text(make_tiny_conll(tmp_path / "ok.conll").read_text().replace("\tB-PER\n", "\tPER\n", 1))
    out = tmp_path / "job"
    assert "is not '<token> ... <tag>' with a BIO tag" in refused(ner_overrides(tiny_model_dir, bad, out), out)


def test_text_folder_without_documents(tmp_path):
    from tests.helpers import make_tiny_llama

    model = make_tiny_llama(tmp_path / "llama")
    (tmp_path / "docs").mkdir()
    out = tmp_path / "job"
    message = refused(["model=hf", f"model.pretrained_model_name_or_path={model}", "task=causal_lm", "data=text",
                       "data.source=folder", f"data.path={tmp_path / 'docs'}", "monitor=val/loss", "monitor_mode=min",
                       f"output_dir={out}", "logger=none", "trainer.accelerator=cpu", "max_length=16"], out)
    assert "the train split is empty" in message


def ner_overrides(model_dir, path, out):
    return ["model=hf", f"model.pretrained_model_name_or_path={model_dir}", "data=wnut16", f"data.path={path}",
            "task=token_classification", "monitor=val/f1", f"output_dir={out}", "logger=none",
            "trainer.accelerator=cpu", "max_length=16"]


# -- model directories --------------------------------------------------------------------------------------------

class RunsCode:
    """Pickled, it calls a function when unpickled (what a hostile pytorch_model.bin does)."""

    def __reduce__(self):
        return (print, ("unpickled: code ran",))


def _broken_model(tiny_model_dir, tmp_path, damage: str):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    if damage == "no tokenizer":
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            (model / name).unlink(missing_ok=True)
    elif damage == "no weights":
        (model / "model.safetensors").unlink()
    elif damage == "truncated weights":
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    elif damage == "pickled code in the weights":
        import torch
        from safetensors.torch import load_file

        torch.save({**load_file(model / "model.safetensors"), "x": RunsCode()}, model / "pytorch_model.bin")
        (model / "model.safetensors").unlink()
    elif damage == "no config":
        (model / "config.json").unlink()
    elif damage == "broken config":
        (model / "config.json").write_text("{not json")
    return model


MODEL_DAMAGE = {
    "no tokenizer": "no tokenizer files; valid: one of tokenizer.json, vocab.txt",
    "no weights": "no weights; valid: model.safetensors or pytorch_model.bin",
    "truncated weights": "model.safetensors is truncated or corrupt",
    "pickled code in the weights": "pytorch_model.bin holds objects other than tensors, which could run code when "
                                   "loaded; ftlab loads weights only; valid: model.safetensors",
    "no config": "no config.json there (not a checkpoint directory)",
    "broken config": "cannot load its config",
}


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_bad_model_directory(damage, tiny_model_dir, tiny_csv, tmp_path):
    model = _broken_model(tiny_model_dir, tmp_path, damage)
    out = tmp_path / "job"
    message = refused(tiny_overrides(model, tiny_csv, out), out)
    assert message.startswith(f"model.pretrained_model_name_or_path='{model}': ")
    assert MODEL_DAMAGE[damage] in message


def test_missing_model_directory(tiny_csv, tmp_path):
    out = tmp_path / "job"
    message = refused(tiny_overrides(tmp_path / "nowhere", tiny_csv, out), out)
    assert message.startswith(f"model.pretrained_model_name_or_path='{tmp_path / 'nowhere'}': ")


# -- what the user sees ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_command_line_prints_one_line_and_exits_1(tiny_model_dir, tiny_csv, tmp_path):
    out = tmp_path / "job"
    proc = subprocess.run(
        [sys.executable, "run.py", *tiny_overrides(tiny_model_dir, tiny_csv, out, "strategy=partial",
                                                    "++strategy.trainable_layer=2"), f"hydra.run.dir={out}"],
        cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "ftlab: strategy.trainable_layer: unknown option of strategy partial; valid: frozen_dropout, lr_grid, name, "
        "train_embeddings, train_head, trainable_layers; did you mean trainable_layers?"]
    assert nothing_result_like(out)
    assert json.loads(json.dumps(sorted(p.name for p in out.iterdir()))) in ([".hydra", "run.log"], [".hydra"])
