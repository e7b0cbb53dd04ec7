"""Bad arguments to the tools (predict, onnx_export, report): one clear line each, a non-zero exit status, and nothing
result-like written. (Bad job directories for ``resume=``: tests/training/test_resumed_job.py.)"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ftlab.deploy.predict import main as predict_main
from ftlab.deploy.release import main as onnx_main
from ftlab.sweeps.report import main as report_main
from tests.helpers import compose, tiny_overrides

MODEL_HELP = "job directory (with model/) or an exported model directory"
EXPORT_FILES = "model.onnx, model.onnx.data, parity.json, model.int8.onnx, deploy.json"  # what an ONNX export writes
TEXTS = ["goal team coach league", "pasta soup cheese bread", "laptop chip server cloud"]


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    """A tiny exported text classifier and token classifier (save_pretrained of the model and its tokenizer)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("exported")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    labels = ["food", "sport", "tech"]
    built = {}
    for name, cls in (("clf", AutoModelForSequenceClassification), ("ner", AutoModelForTokenClassification)):
        model = cls.from_pretrained(tiny_model_dir, num_labels=3, id2label=dict(enumerate(labels)),
                                    label2id={label: i for i, label in enumerate(labels)})
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        built[name] = root / name
    built["base"] = tiny_model_dir
    return built


class Env:
    """One case's world inside ``tmp``: a job directory with the classifier as ``job/model`` and an input file."""

    def __init__(self, tmp: Path, models: dict[str, Path]):
        self.tmp, self.models = tmp, models
        self.job = tmp / "job"
        self.model = self.job / "model"
        shutil.copytree(models["clf"], self.model)
        self.input = self.file("in.txt", "\n".join(TEXTS) + "\n")
        self.output = tmp / "preds.jsonl"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def copy(self, name: str) -> Path:
        """A private copy of a built model (``clf``, ``ner``, ``base``), as a model directory in ``tmp``."""
        return Path(shutil.copytree(self.models[name], self.tmp / name))

    def predict(self, *extra: str, model: Path | None = None, input: Path | None = None,
                output: Path | None = None) -> list[str]:
        return [str(model or self.job), "--input", str(input or self.input), "--output", str(output or self.output),
                *extra]

    def saved_config(self, data: Path) -> Path:
        """The job's saved config as Hydra writes it (unresolved), for a job that trained on ``data``."""
        (self.job / ".hydra").mkdir()
        config = compose(tiny_overrides(self.models["base"], data, self.job))
        OmegaConf.save(config, self.job / ".hydra" / "config.yaml", resolve=False)
        return self.job / ".hydra" / "config.yaml"

    def link(self, name: str, to: Path) -> Path:
        """A symbolic link ``name`` in ``tmp`` to ``to``."""
        (self.tmp / name).symlink_to(to)
        return self.tmp / name

    def other_job(self, name: str, hydra: bool = True) -> Path:
        """Another job's directory in ``tmp``: a saved config (``hydra``) or ``model/`` beside ``checkpoints/``."""
        job = self.tmp / name
        if hydra:
            (job / ".hydra").mkdir(parents=True)
            (job / ".hydra" / "config.yaml").write_text("task: text_classification\nmax_length: 16\n")
        else:
            (job / "model").mkdir(parents=True, exist_ok=True)  # exists when ``name`` is the case's own job
            (job / "checkpoints").mkdir()
            (job / "checkpoints" / "best.ckpt").write_bytes(b"weights")
        (job / "metrics.json").write_text('{"test/acc": 0.9}\n')
        return job

    def sweep(self, *jobs: str, completed: bool = False) -> Path:
        sweep = self.tmp / "sweep"
        sweep.mkdir(exist_ok=True)
        for job in jobs:
            (sweep / job / ".hydra").mkdir(parents=True)
            (sweep / job / ".hydra" / "config.yaml").write_text("monitor: val/acc\nstrategy: {name: full}\n")
            (sweep / job / ".hydra" / "overrides.yaml").write_text("- strategy=full\n")
            if completed:
                (sweep / job / "metrics.json").write_text(json.dumps({"val/acc": 0.5, "test/acc": 0.5, "test/f1": 0.4,
                                                                      "lr": 1e-3, "monitor": "val/acc"}))
        return sweep


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


@dataclass
class Case:
    id: str
    tool: str  # predict / onnx_export / report
    setup: Callable[[Env], tuple[list[str], list[str]]]  # argv, fragments the message must contain
    status: int = 1


def _unlink(path: Path) -> Path:
    path.unlink()
    return path


def after(_effect, result):
    """``result``, once ``_effect`` (an argument, so evaluated first) has broken something."""
    return result


CASES = [
    # -- predict: the model directory ----------------------------------------------------------------------------
    Case("predict-model-missing", "predict", lambda e: (
        e.predict(model=e.tmp / "nope"), [f"{e.tmp / 'nope'}: no such directory", MODEL_HELP])),
    Case("predict-model-is-a-file", "predict", lambda e: (
        e.predict(model=e.input), [f"{e.input}: not a directory", MODEL_HELP])),
    Case("predict-neither-job-nor-model-dir", "predict", lambda e: (
        e.predict(model=after((e.tmp / "empty").mkdir(), e.tmp / "empty")),
        [f"{e.tmp / 'empty'}: neither a job directory (no model/config.json) nor a model directory", MODEL_HELP])),
    Case("predict-base-model-without-head", "predict", lambda e: (
        e.predict(model=e.copy("base")), [f"{e.tmp / 'base' / 'config.json'}: architectures=['BertModel']",
                                          "valid: *ForSequenceClassification (text_classification)"])),
    Case("predict-config-not-json", "predict", lambda e: (
        after((e.model / "config.json").write_text("{broken"), e.predict()),
        [f"{e.model / 'config.json'}: not valid JSON", "export the model again"])),
    Case("predict-no-tokenizer-files", "predict", lambda e: (
        after(_unlink(e.model / "tokenizer.json"), e.predict()),
        [f"{e.model}: no tokenizer files", "valid: one of tokenizer.json, vocab.txt"])),
    Case("predict-no-weights", "predict", lambda e: (
        after(_unlink(e.model / "model.safetensors"), e.predict()),
        [f"{e.model}: no weights", "valid: model.safetensors or pytorch_model.bin"])),
    Case("predict-truncated-safetensors", "predict", lambda e: (
        after(_truncate(e.model / "model.safetensors"), e.predict()),
        [f"{e.model}: model.safetensors is truncated or corrupt", "re-export the checkpoint"])),
    Case("predict-corrupt-safetensors", "predict", lambda e: (
        after((e.model / "model.safetensors").write_bytes(b"\xff" * 64), e.predict()),
        [f"{e.model}: model.safetensors is truncated or corrupt", "re-export the checkpoint"])),
    Case("predict-corrupt-pytorch-bin", "predict", lambda e: (
        after((_unlink(e.model / "model.safetensors"), (e.model / "pytorch_model.bin").write_bytes(b"PK\x03\x04 cut")),
              e.predict()),
        [f"{e.model}: pytorch_model.bin is truncated or corrupt", "re-export the checkpoint"])),
    # -- predict: the input file ---------------------------------------------------------------------------------
    Case("predict-input-missing", "predict", lambda e: (
        e.predict(input=e.tmp / "missing.txt"),
        [f"--input {e.tmp / 'missing.txt'}: no such file", "give a .txt file (one text per line)"])),
    Case("predict-input-is-a-directory", "predict", lambda e: (
        e.predict(input=e.tmp), [f"--input {e.tmp}: not a file", "give a .txt file"])),
    Case("predict-input-empty", "predict", lambda e: (
        e.predict(input=e.file("empty.txt", "")),
        [f"--input {e.tmp / 'empty.txt'}: no texts", "give one text per line"])),
    Case("predict-input-blank-lines-only", "predict", lambda e: (
        e.predict(input=e.file("blank.txt", "\n  \n\n")),
        [f"--input {e.tmp / 'blank.txt'}: no texts", "give one text per line"])),
    Case("predict-input-not-utf8", "predict", lambda e: (
        e.predict(input=e.file("latin1.txt", "goal team\ncaf\xe9 news\n".encode("latin-1"))),
        [f"--input {e.tmp / 'latin1.txt'}:2: not UTF-8 text (byte 0xe9)", "save the file as UTF-8"])),
    Case("predict-csv-without-text-column", "predict", lambda e: (
        e.predict(input=e.file("in.csv", "review\ngoal team\n")),
        [f"--input {e.tmp / 'in.csv'}: no column 'text' (--text-column)", "columns there: review"])),
    Case("predict-csv-header-only", "predict", lambda e: (
        e.predict(input=e.file("header.csv", "text\n")),
        [f"--input {e.tmp / 'header.csv'}: no rows", "a table with a 'text' column (--text-column) and one text "
                                                     "per row"])),
    Case("predict-csv-row-without-text", "predict", lambda e: (
        e.predict(input=e.file("gap.csv", "text,id\ngoal team,1\n,2\n")),
        [f"--input {e.tmp / 'gap.csv'}: row 2 has no text in column 'text'", "every row needs a text"])),
    Case("predict-jsonl-broken-line", "predict", lambda e: (
        e.predict(input=e.file("in.jsonl", '{"text": "goal"}\n{"text": \n')),
        [f"--input {e.tmp / 'in.jsonl'}:2: not valid JSON", "one text per row"])),
    Case("predict-input-unsupported-suffix", "predict", lambda e: (
        e.predict(input=e.file("in.docx", "goal team\n")),
        [f"--input {e.tmp / 'in.docx'}: unsupported suffix '.docx'", "valid: .txt, .csv, .json, .jsonl, .parquet"])),
    # -- predict: the other arguments ----------------------------------------------------------------------------
    Case("predict-batch-size-zero", "predict", lambda e: (
        e.predict("--batch-size", "0"), ["--batch-size=0: must be a positive integer"])),
    Case("predict-batch-size-negative", "predict", lambda e: (
        e.predict("--batch-size", "-4"), ["--batch-size=-4: must be a positive integer"])),
    Case("predict-max-length-zero", "predict", lambda e: (
        e.predict("--max-length", "0"), ["--max-length=0: must be a positive integer"])),
    Case("predict-batch-size-not-a-number", "predict", lambda e: (
        e.predict("--batch-size", "many"), ["argument --batch-size: invalid int value: 'many'", "--help"]), status=2),
    Case("predict-input-not-given", "predict", lambda e: (
        [str(e.job)], ["the following arguments are required: --input", "--help"]), status=2),
    Case("predict-output-dir-missing", "predict", lambda e: (
        [str(e.job), "--input", str(e.input), "--output", str(e.tmp / "no" / "preds.jsonl")],
        [f"--output {e.tmp / 'no' / 'preds.jsonl'}: the directory {e.tmp / 'no'} does not exist",
         "give a path in an existing directory"])),
    Case("predict-output-is-a-directory", "predict", lambda e: (
        [str(e.job), "--input", str(e.input), "--output", str(e.tmp)],
        [f"--output {e.tmp}: is a directory", "give a file path"])),
    # -- predict: an output over what must stay (the model, a job's results, the input) -------------------------
    Case("predict-output-over-the-weights", "predict", lambda e: (
        e.predict(output=e.model / "model.safetensors"),
        [f"--output {e.model / 'model.safetensors'}: is inside the model directory {e.model}", "give a path outside"])),
    Case("predict-output-new-file-in-the-model-dir", "predict", lambda e: (
        e.predict(output=e.model / "preds.jsonl"), [f"--output {e.model / 'preds.jsonl'}: is inside the model "
                                                    f"directory {e.model}"])),
    Case("predict-output-symlink-to-the-weights", "predict", lambda e: (
        e.predict(output=e.link("out.jsonl", e.model / "model.safetensors")),
        [f"--output {e.tmp / 'out.jsonl'}: is inside the model directory {e.model}"])),
    Case("predict-output-in-the-job-dir-read", "predict", lambda e: (
        e.predict(output=e.job / "preds.jsonl"),
        [f"--output {e.job / 'preds.jsonl'}: is inside the job directory {e.job}", "give a path outside it"])),
    Case("predict-output-over-another-jobs-metrics", "predict", lambda e: (
        e.predict(output=e.other_job("other") / "metrics.json"),
        [f"--output {e.tmp / 'other' / 'metrics.json'}: is inside the job directory {e.tmp / 'other'}"])),
    Case("predict-output-over-another-jobs-checkpoint", "predict", lambda e: (
        e.predict(output=e.other_job("other", hydra=False) / "checkpoints" / "best.ckpt"),
        [f"--output {e.tmp / 'other' / 'checkpoints' / 'best.ckpt'}: is inside the job directory {e.tmp / 'other'}"])),
    Case("predict-output-symlink-to-the-input", "predict", lambda e: (
        e.predict(output=e.link("out.jsonl", e.input)), [f"--output {e.tmp / 'out.jsonl'}: is the --input file"])),
    Case("predict-input-lone-surrogate-jsonl", "predict", lambda e: (
        e.predict(input=e.file("in.jsonl", '{"text": "goal team"}\n{"text": "goal \\ud800 team"}\n')),
        [f"--input {e.tmp / 'in.jsonl'}: line 2: 'text' has a lone surrogate (U+D800), not valid Unicode text"])),
    Case("predict-input-lone-surrogate-json", "predict", lambda e: (
        e.predict(input=e.file("in.json", '[{"text": "goal \\udfff"}]')),
        [f"--input {e.tmp / 'in.json'}: item 1: 'text' has a lone surrogate (U+DFFF)"])),
    Case("predict-input-surrogate-bytes-txt", "predict", lambda e: (
        e.predict(input=e.file("in.txt", b"goal team\ngoal \xed\xa0\x80 team\n")),
        [f"--input {e.tmp / 'in.txt'}:2: not UTF-8 text (byte 0xed)", "save the file as UTF-8"])),
    # -- onnx_export ---------------------------------------------------------------------------------------------
    Case("onnx-model-missing", "onnx_export", lambda e: (
        [str(e.tmp / "nope")], [f"{e.tmp / 'nope'}: no such directory", MODEL_HELP])),
    Case("onnx-neither-job-nor-model-dir", "onnx_export", lambda e: (
        [str(after((e.tmp / "empty").mkdir(), e.tmp / "empty"))], [f"{e.tmp / 'empty'}: neither a job directory",
                                                                    MODEL_HELP])),
    Case("onnx-quantize-a-model-dir", "onnx_export", lambda e: (
        [str(e.copy("ner")), "--quantize", "int8"],
        [f"{e.tmp / 'ner'}: --quantize compares int8 with fp32 on the job's test split, so it needs a job directory",
         "no .hydra/config.yaml"])),
    Case("onnx-quantize-after-the-data-moved", "onnx_export", lambda e: (
        [str(after(e.saved_config(e.tmp / "moved.csv"), e.job)), "--quantize", "int8"],
        [f"{e.job}: --quantize rebuilds the job's test split from the data its saved config names, which is not as it "
         f"was: data.path='{e.tmp / 'moved.csv'}': no such file or directory", "put the data back where"])),
    Case("onnx-quantize-unknown-type", "onnx_export", lambda e: (
        [str(e.job), "--quantize", "int4"], ["argument --quantize: invalid choice: 'int4'"]), status=2),
    Case("onnx-negative-tolerance", "onnx_export", lambda e: (
        [str(e.job), "--quantize", "int8", "--tolerance", "-1"], ["'-1' is not a number >= 0"]), status=2),
    Case("onnx-base-model-without-head", "onnx_export", lambda e: (
        [str(e.copy("base"))], ["architectures=['BertModel']", "valid: *ForSequenceClassification"])),
    Case("onnx-no-weights", "onnx_export", lambda e: (
        after(_unlink(e.model / "model.safetensors"), [str(e.job)]), [f"{e.model}: no weights"])),
    Case("onnx-truncated-safetensors", "onnx_export", lambda e: (
        after(_truncate(e.model / "model.safetensors"), [str(e.job)]),
        [f"{e.model}: model.safetensors is truncated or corrupt"])),
    Case("onnx-input-missing", "onnx_export", lambda e: (
        [str(e.job), "--input", str(e.tmp / "missing.txt")], [f"--input {e.tmp / 'missing.txt'}: no such file"])),
    Case("onnx-output-is-a-file", "onnx_export", lambda e: (
        [str(e.job), "--output", str(e.input)], [f"--output {e.input}: exists and is not a directory",
                                                 "give a directory"])),
    # -- onnx_export: an output directory over what must stay (it is replaced whole) ------------------------------
    Case("onnx-output-is-the-job-dir", "onnx_export", lambda e: (
        [str(e.job), "--output", str(e.job)],
        [f"--output {e.job}: contains the model directory {e.model}, which the output would replace"])),
    Case("onnx-output-is-the-model-dir", "onnx_export", lambda e: (
        [str(e.job), "--output", str(e.model)], [f"--output {e.model}: is the model directory"])),
    Case("onnx-output-inside-the-model-dir", "onnx_export", lambda e: (
        [str(e.model), "--output", str(e.model / "onnx")],
        [f"--output {e.model / 'onnx'}: is inside the model directory {e.model}"])),
    Case("onnx-output-contains-the-model", "onnx_export", lambda e: (
        [str(e.copy("ner")), "--output", str(e.tmp)],
        [f"--output {e.tmp}: contains the model directory {e.tmp / 'ner'}"])),
    Case("onnx-output-symlink-to-the-job", "onnx_export", lambda e: (
        [str(e.job), "--output", str(e.link("exports", e.job))],
        [f"--output {e.tmp / 'exports'}: contains the model directory {e.model}"])),
    Case("onnx-output-over-the-jobs-checkpoints", "onnx_export", lambda e: (
        [str(e.job), "--output", str(after(e.other_job("job", hydra=False), e.job / "checkpoints"))],
        [f"--output {e.job / 'checkpoints'}: is inside the job directory {e.job}",
         "give a path outside it, or its onnx/"])),
    Case("onnx-output-is-another-job", "onnx_export", lambda e: (
        [str(e.job), "--output", str(e.other_job("other"))],
        [f"--output {e.tmp / 'other'}: is a job directory"])),
    Case("onnx-output-contains-the-input", "onnx_export", lambda e: (
        [str(e.job), "--input", str(after((e.tmp / "texts").mkdir(), e.file("texts/in.txt", "goal team\n"))),
         "--output", str(e.tmp / "texts")], [f"--output {e.tmp / 'texts'}: contains the --input file"])),
    Case("onnx-output-dir-of-other-files", "onnx_export", lambda e: (
        [str(e.job), "--output", str(after((e.tmp / "docs").mkdir(), after(e.file("docs/a.md", "x"),
                                                                              e.tmp / "docs")))],
        [f"--output {e.tmp / 'docs'}: holds a.md, which is not a file an export writes ({EXPORT_FILES}), and the "
         "export replaces the directory whole; give a new or empty directory, or an earlier export"])),
    Case("onnx-output-earlier-export-beside-the-users-files", "onnx_export", lambda e: (
        [str(e.job), "--output", str(after((e.tmp / "ship").mkdir(),
                                           after([e.file(f"ship/{name}", "x") for name in
                                                  ("model.onnx", "parity.json", "Dockerfile", "serve.py")],
                                                 e.tmp / "ship")))],
        [f"--output {e.tmp / 'ship'}: holds Dockerfile, which is not a file an export writes ({EXPORT_FILES}), and "
         "the export replaces the directory whole; give a new or empty directory, or an earlier export"])),
    Case("onnx-output-another-jobs-onnx", "onnx_export", lambda e: (
        [str(e.job), "--output", str(e.other_job("other") / "onnx")],
        [f"--output {e.tmp / 'other' / 'onnx'}: is inside the job directory {e.tmp / 'other'}, whose files are the "
         "job's results; give a path outside it"])),
    # -- report --------------------------------------------------------------------------------------------------
    Case("report-dir-missing", "report", lambda e: (
        [str(e.tmp / "nope")], [f"{e.tmp / 'nope'}: no such directory", "give a sweep directory"])),
    Case("report-dir-is-a-file", "report", lambda e: (
        [str(e.input)], [f"{e.input}: not a directory", "give a sweep directory"])),
    Case("report-no-job-dirs", "report", lambda e: (
        after([(e.tmp / "sweep" / d).mkdir(parents=True) for d in ("3", "notes")], [str(e.tmp / "sweep")]),
        [f"{e.tmp / 'sweep'}: no job directories in it", "numbered job directories with .hydra/"])),
    Case("report-single-job-dir", "report", lambda e: (
        [str(e.sweep("0") / "0")], [f"{e.tmp / 'sweep' / '0'}: a single job's directory", "give a sweep directory"])),
    Case("report-parent-of-sweeps", "report", lambda e: (
        after(e.sweep("0"), [str(e.tmp)]), [f"{e.tmp}: no job directories in it",
                                            f"sweeps below it: {e.tmp / 'sweep'}"])),
    Case("report-unknown-metric", "report", lambda e: (
        [str(e.sweep("0", completed=True)), "--metric", "test/bleu"],
        ["--metric='test/bleu': no completed job has this metric", "valid: test/acc, test/f1"])),
]

MAINS = {"predict": predict_main, "onnx_export": onnx_main, "report": report_main}
RESULTS = ("preds.jsonl", "onnx", "summary.md", "summary.csv", "summary_seeds.csv")


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


def run_tool(tool: str, argv: list[str], capsys) -> tuple[int, str]:
    """The exit status and the message of a tool that must fail (in process, as ``python -m`` runs it)."""
    with pytest.raises(SystemExit) as exc:
        MAINS[tool](argv)
    code = exc.value.code
    if isinstance(code, str):  # sys.exit("ftlab.<tool>: ...") prints the message and exits with status 1
        return 1, code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_tool_argument_is_one_clear_line_and_writes_nothing(case, models, tmp_path, capsys):
    env = Env(tmp_path, models)
    argv, fragments = case.setup(env)
    before = _files(tmp_path)
    status, message = run_tool(case.tool, argv, capsys)
    assert status == case.status != 0
    message = message.rstrip("\n")
    assert "\n" not in message and message.startswith(f"ftlab.{case.tool}: "), message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert _files(tmp_path) == before  # nothing written: no output, no temporary file left behind
    assert not [p for p in tmp_path.rglob("*") if p.name in RESULTS]


def test_the_catalogue_covers_every_tool():
    assert len(CASES) >= 18 and {c.tool for c in CASES} == set(MAINS)


def test_predict_works_on_the_same_fixture(models, tmp_path):
    """The control: the unbroken job directory predicts, so the failures above come from what each case broke."""
    env = Env(tmp_path, models)
    assert predict_main(env.predict("--batch-size", "2")) == 0
    preds = [json.loads(line) for line in env.output.read_text().splitlines()]
    assert [p["text"] for p in preds] == TEXTS and all(set(p["probs"]) == {"food", "sport", "tech"} for p in preds)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".preds")] == []  # no temporary file left


def test_onnx_export_writes_and_replaces_the_jobs_own_onnx_folder(models, tmp_path, capsys):
    """The control of the onnx_export output cases: in a real job directory, the default ``<job>/onnx/`` is written
    and, exported again (the job or its model/ given), replaced; the job's other files stay as they were."""
    env = Env(tmp_path, models)
    env.other_job("job", hydra=False)  # the case's job becomes a real one: model/ beside checkpoints/, metrics.json
    job_files = _files(env.job)
    assert onnx_main([str(env.job)]) == 0
    assert onnx_main([str(env.job), "--output", str(env.job / "onnx")]) == 0
    assert onnx_main([str(env.model), "--output", str(env.job / "onnx")]) == 0  # the model of this very job
    assert (env.job / "onnx" / "model.onnx").is_file()
    assert {k: v for k, v in _files(env.job).items() if not k.startswith("onnx")} == job_files


def test_onnx_export_never_replaces_another_jobs_export(models, tmp_path, capsys):
    env = Env(tmp_path, models)
    other = env.other_job("other")
    (other / "onnx").mkdir()
    for name in ("model.onnx", "parity.json"):  # job other's own export
        (other / "onnx" / name).write_text("other's")
    status, message = run_tool("onnx_export", [str(env.job), "--output", str(other / "onnx")], capsys)
    assert (status, message) == (1, f"ftlab.onnx_export: --output {other / 'onnx'}: is inside the job directory "
                                    f"{other}, whose files are the job's results; give a path outside it")
    assert {p.name: p.read_text() for p in (other / "onnx").iterdir()} == {"model.onnx": "other's",
                                                                          "parity.json": "other's"}


def test_predict_writes_into_a_project_root_with_model_and_checkpoints_folders(models, tmp_path):
    """A directory with model/ and checkpoints/ folders is not a job by that alone (a project's root, say); one with
    what a job writes beside model/ (metrics.json, plan.json) or Hydra's saved config is."""
    from ftlab.deploy.output_paths import is_job_dir

    env = Env(tmp_path, models)
    project = tmp_path / "proj"
    for folder in ("model", "checkpoints"):
        (project / folder).mkdir(parents=True)
    assert predict_main(env.predict(output=project / "preds.jsonl")) == 0
    assert [json.loads(line)["text"] for line in (project / "preds.jsonl").read_text().splitlines()] == TEXTS
    assert not is_job_dir(project)
    for record in ("plan.json", "metrics.json"):
        (project / record).write_text("{}")
        assert is_job_dir(project)
        (project / record).unlink()
    (project / "model").rmdir()
    (project / "metrics.json").write_text("{}")
    assert not is_job_dir(project)  # a record without model/ beside it
    assert is_job_dir(env.other_job("hydra-job"))


def test_exported_model_has_shareable_permissions_whatever_the_umask(models, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftlab.deploy.export import export_model

    module = SimpleNamespace(model=AutoModelForSequenceClassification.from_pretrained(models["clf"]),
                             tokenizer=AutoTokenizer.from_pretrained(models["clf"]))
    old = os.umask(0o077)
    try:
        out = export_model(module, tmp_path / "job" / "model")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert "model.safetensors" in modes and "tokenizer.json" in modes
    assert modes == {name: 0o755 if (out.parent / name).is_dir() or name == "model" else 0o644 for name in modes}
