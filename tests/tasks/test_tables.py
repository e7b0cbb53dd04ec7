"""Data larger than memory: tables are streamed in chunks, a bad row deep in a file is named by its line, the
preparation streamed through Arrow files equals the one in memory, and a cached job reads none of its files."""

from __future__ import annotations

import csv
import json

import pytest

from ftlab.core.checks import FtlabError
from ftlab.data.datamodule import FineTuneData
from ftlab.model.loading import load_tokenizer
from ftlab.tasks import labelled_texts, tables
from ftlab.tasks.labelled_splits import clean_and_split
from ftlab.tasks.labelled_texts import load_source
from ftlab.train import train
from tests.helpers import compose, tiny_overrides

ROWS = 25_000  # three chunks of tables.CHUNK_ROWS: the bad row is in the last one
BAD = 24_990  # the line it is on (the header is line 1)
TOPICS = {"sport": "goal match team", "food": "bread soup cheese", "tech": "chip code robot"}


def big_rows(n: int) -> list[tuple[str, str]]:
    names = list(TOPICS)
    return [(f"{TOPICS[names[i % 3]]} report {i}", names[i % 3]) for i in range(n)]


def write_csv(path, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


def spoil(path, line: int, replace) -> None:
    """Replace line ``line`` (1-based) of the file by ``replace(line_text)``."""
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = replace(lines[line - 1])
    path.write_bytes(b"\n".join(lines))


BAD_FILES = {  # name: (writer, how the line is spoiled, what the error must say)
    "fields.csv": (write_csv, lambda line: line + b",extra", f"malformed CSV at line {BAD}: expected 2 fields"),
    "bytes.csv": (write_csv, lambda line: line.replace(b"report", b"caf\xe9"), f"bytes.csv:{BAD}: not UTF-8 text"),
    "broken.jsonl": (write_jsonl, lambda line: line[:-3], f"broken.jsonl:{BAD - 1}: not valid JSON"),
    "list.jsonl": (write_jsonl, lambda line: b'["soup", "food"]', f"list.jsonl: line {BAD - 1} is list"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_row_deep_in_a_large_file_is_named_by_its_line(name, tiny_model_dir, tmp_path):
    write, replace, expected = BAD_FILES[name]
    path = write(tmp_path / name, big_rows(ROWS))
    spoil(path, BAD if name.endswith(".csv") else BAD - 1, replace)  # JSONL has no header: row BAD - 1 is there
    with pytest.raises(FtlabError) as err:
        train(compose(tiny_overrides(tiny_model_dir, path, tmp_path / "job")))
    assert expected in str(err.value) and str(path) in str(err.value)
    assert not (tmp_path / "job" / "metrics.json").exists()


def test_a_lone_surrogate_in_json_is_named_or_read_as_replacement(tmp_path, caplog):
    """JSON can escape half a UTF-16 pair; the text it decodes to is no text (pandas, tokenizers and UTF-8 fail)."""
    path = tmp_path / "half.jsonl"
    path.write_text('{"text": "goal", "label": "sport"}\n{"text": "soup \\ud800", "label": "food"}\n')
    with pytest.raises(FtlabError, match=r"half\.jsonl: line 2: 'text' has a lone surrogate \(U\+D800\), not valid"):
        tables.read_table(str(path))
    assert tables.read_table(str(path), errors="replace")["text"].tolist() == ["goal", "soup \ufffd"]
    assert "lone surrogates in JSON strings read as U+FFFD" in caplog.text


def test_tables_are_read_in_chunks_with_the_line_of_each(tmp_path):
    path = write_csv(tmp_path / "big.csv", big_rows(ROWS))
    chunks = list(tables.iter_table(str(path), chunk_rows=tables.CHUNK_ROWS, as_text=True))
    assert [(line, len(frame)) for line, frame in chunks] == [(2, 10_000), (10_002, 10_000), (20_002, 5_000)]
    last_line, last = chunks[-1]
    assert last.iloc[-1]["text"] == big_rows(ROWS)[-1][0]
    jsonl = write_jsonl(tmp_path / "big.jsonl", big_rows(ROWS))
    assert [(line, len(frame)) for line, frame in tables.iter_table(str(jsonl), chunk_rows=10_000)] == \
        [(1, 10_000), (10_001, 10_000), (20_001, 5_000)]


def test_streamed_preparation_equals_the_one_in_memory(tmp_path, monkeypatch):
    rows = big_rows(300) + big_rows(40) + [("", "food"), ("   ", "sport"), ("text without label", "")]  # duplicates
    train_file = write_csv(tmp_path / "train.csv", rows)
    val_file = write_jsonl(tmp_path / "val.jsonl", big_rows(320)[290:] + [("fresh text 1", "food")])
    cfg = {"source": "files", "path": str(train_file), "val_path": str(val_file), "text_column": "text",
           "label_column": "label"}
    in_memory, names = clean_and_split(load_source(cfg), 0.1, 0.2, seed=3)
    monkeypatch.setattr(labelled_texts, "CHUNK_ROWS", 7)  # chunks that split duplicates and the held-out rows apart
    (tmp_path / "work").mkdir()
    streamed, streamed_names = clean_and_split(labelled_texts.source_chunks(cfg), 0.1, 0.2, seed=3,
                                               work_dir=tmp_path / "work")
    assert streamed_names == names == ["food", "sport", "tech"]
    for split, (texts, labels) in in_memory.items():
        assert streamed[split][0]["text"] == texts and streamed[split][1] == labels, split
    assert len(in_memory["train"][0]) + len(in_memory["test"][0]) == 290  # 300 distinct, 10 of them in validation
    assert len(in_memory["validation"][0]) == 31


def test_file_checks_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "train.csv", big_rows(30))
    cache = tmp_path / "cache"
    first = tables.scan_table(str(path), "strict", "label", str(cache))
    assert first == (["text", "label"], ["food", "sport", "tech"])
    read = tables.iter_table
    monkeypatch.setattr(tables, "iter_table", lambda *a, **k: pytest.fail("an unchanged file was read again"))
    assert tables.scan_table(str(path), "strict", "label", str(cache)) == first
    with open(path, "a") as file:
        file.write("fresh text,music\n")
    monkeypatch.setattr(tables, "iter_table", read)
    assert tables.scan_table(str(path), "strict", "label", str(cache))[1] == ["food", "music", "sport", "tech"]


def test_a_cached_job_reads_none_of_its_data_files(tiny_model_dir, tmp_path, monkeypatch):
    from ftlab.validate import validate_config

    path = write_csv(tmp_path / "train.csv", big_rows(600))
    cfg = compose(tiny_overrides(tiny_model_dir, path, tmp_path / "job", f"data.cache_dir={tmp_path / 'cache'}"))
    tokenizer = load_tokenizer({"pretrained_model_name_or_path": str(tiny_model_dir)})

    def setup():
        validate_config(cfg)
        dm = FineTuneData(dict(cfg.data), tokenizer, cfg.max_length, cfg.batch_size)
        dm.prepare_data()
        dm.setup()
        return dm

    cold = setup()
    assert cold.split_sizes == {"train": 480, "validation": 60, "test": 60}
    for module in (tables, labelled_texts):
        monkeypatch.setattr(module, "iter_table", lambda *a, **k: pytest.fail("a cached job read its data file"))
    cached = setup()
    assert cached.datasets["train"]["input_ids"] == cold.datasets["train"]["input_ids"]
    assert cached.datasets["test"]["labels"] == cold.datasets["test"]["labels"]


@pytest.mark.parametrize("name,text,names", [
    # Chunks of 2 rows: a chunk of 1 and 0 next to one of 1.0 and 0.0 is still one column of whole numbers.
    ("floats.csv", "text,label\n" + "".join(f"text {i},{['1', '0', '1.0', '0.0'][i % 4]}\n" for i in range(40)),
     ["0", "1"]),
    ("bools.csv", "text,label\n" + "".join(f"text {i},{['true', 'False', 'TRUE', 'false'][i % 4]}\n"
                                           for i in range(40)), ["False", "True"]),
    ("halves.csv", "text,label\n" + "".join(f"text {i},{['1', '2', '2.5'][i % 3]}\n" for i in range(40)),
     ["1.0", "2.0", "2.5"]),
    # The first chunk's records have no label at all: those rows are dropped (with a warning), never a KeyError.
    ("missing.jsonl", "".join(json.dumps({"text": f"t {i}", **({"label": [1, 2.0][i % 2]} if i > 1 else {})}) + "\n"
                              for i in range(40)), ["1", "2"]),
])
def test_labels_are_typed_by_their_whole_column_not_by_chunk(name, text, names, tmp_path, monkeypatch, caplog):
    (tmp_path / name).write_text(text)
    monkeypatch.setattr(labelled_texts, "CHUNK_ROWS", 2)
    cfg = {"source": "files", "path": str(tmp_path / name), "text_column": "text", "label_column": "label"}
    (tmp_path / "work").mkdir()
    splits, found = clean_and_split(labelled_texts.source_chunks(cfg), 0.1, 0.2, seed=1, work_dir=tmp_path / "work")
    assert found == names
    seen = {label for _, labels in splits.values() for label in labels}
    assert sorted(seen, key=labelled_texts.label_sort_key) == names
    if name == "missing.jsonl":
        assert "2 row(s) with an empty text or label dropped (lines 1, 2)" in caplog.text
