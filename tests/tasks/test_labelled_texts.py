"""Labelled texts as a source gives them: what a label folder holds (its junk is no class and no text), one spelling
per label across tables and folders, and one label per text."""

from __future__ import annotations

import json

import pytest

from ftlab.core.checks import DataError
from ftlab.tasks.labelled_splits import clean_and_split
from ftlab.tasks.labelled_texts import load_source, read_folder, source_chunks

SPELLING = "valid: one consistent spelling per class"
DISTINCT = " (or data.label_case=distinct if they are different classes)"


def write_folder(root, files: dict[str, str | bytes]):
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


def table_cfg(path) -> dict:
    return {"source": "files", "path": str(path), "text_column": "text", "label_column": "label"}


def test_folder_junk_is_neither_a_class_nor_a_text(tmp_path):
    root = write_folder(tmp_path / "news", {
        "sport/1.txt": "goal match", "sport/.DS_Store": b"\x00\x05\x16\x07\xff", "sport/Thumbs.db": b"\xff\xd8",
        "sport/.notes.txt": "a hidden draft", "food/2.txt": "bread soup", "food/desktop.ini": "[.ShellClassInfo]",
        ".ipynb_checkpoints/1-checkpoint.txt": "goal match", "__MACOSX/sport/._1.txt": b"\x00\x05\x16\x07",
        ".git/HEAD": "ref: refs/heads/main"})
    assert read_folder(str(root)) == (["bread soup", "goal match"], ["food", "sport"])


@pytest.mark.parametrize("files,problem", [
    ({}, "no class sub-folders"),
    ({".ipynb_checkpoints/1-checkpoint.txt": "goal match", "notes.txt": "loose file"}, "no class sub-folders"),
    ({"sport/.DS_Store": b"\x00\x05", "food/Thumbs.db": b"\xff"}, "no class sub-folder holds a text file"),
])
def test_a_folder_without_class_sub_folders_is_named(files, problem, tmp_path):
    root = write_folder(tmp_path / "news", files)
    root.mkdir(exist_ok=True)
    with pytest.raises(DataError) as err:
        read_folder(str(root))
    assert str(err.value) == (f"{root}: {problem}; valid: one sub-folder per class, named by its label, holding that "
                              "class's text files (e.g. sport/001.txt)")


def _rows(*pairs: tuple[str, str]) -> str:
    return "text,label\n" + "".join(f"{text},{label}\n" for text, label in pairs)


SPELLINGS = {  # file: (content, labels as written that are one class twice, what differs)
    "case.csv": (_rows(("goal match", "sport"), ("bread soup", "food"), ("team coach", "Sport")),
                 ("'Sport' and 'sport'", "case")),
    "spaces.csv": (_rows(("goal match", "sport"), ("bread soup", "food"), ("team coach", " sport")),
                   ("' sport' and 'sport'", "surrounding white space")),
    "both_spaced.csv": (_rows(("goal match", "sport "), ("bread soup", "food"), ("team coach", " sport")),
                        ("' sport' and 'sport '", "surrounding white space")),
    "spaced_case.csv": (_rows(("goal match", "sport"), ("bread soup", "food"), ("team coach", " Sport")),
                        ("' Sport' and 'sport'", "case")),
    "case.jsonl": ("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in
                           [("goal match", "SPORT"), ("bread soup", "food"), ("team coach", "sport")]),
                   ("'SPORT' and 'sport'", "case")),
}


@pytest.mark.parametrize("name", list(SPELLINGS))
def test_two_spellings_of_one_label_are_refused(name, tmp_path):
    content, (labels, how) = SPELLINGS[name]
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError) as err:
        load_source(table_cfg(tmp_path / name))
    deliberate = DISTINCT if how == "case" else ""
    assert str(err.value) == f"{tmp_path / name}: labels {labels} differ only in {how}; {SPELLING}{deliberate}"


def test_two_spellings_of_one_label_folder_are_refused(tmp_path):
    root = write_folder(tmp_path / "news", {"sport/1.txt": "goal match", "Sport/2.txt": "team coach",
                                            "food/3.txt": "bread soup"})
    with pytest.raises(DataError) as err:
        load_source({"source": "folder", "path": str(root)})
    assert str(err.value) == f"{root}: labels 'Sport' and 'sport' differ only in case; {SPELLING}{DISTINCT}"


def test_labels_differing_in_case_are_two_classes_when_the_config_says_so(tmp_path):
    """``data.label_case=distinct``: 'US' (a country) and 'us' (a pronoun) are kept apart, in a table, its streamed
    split and a label folder."""
    (tmp_path / "case.csv").write_text(_rows(("goal match", "Sport"), ("bread soup", "food"), ("team coach", "sport")))
    cfg = {**table_cfg(tmp_path / "case.csv"), "label_case": "distinct"}
    assert load_source(cfg)["train"][1] == ["Sport", "food", "sport"]
    rows = [(f"goal match {i}", "Sport") for i in range(5)] + [(f"team coach {i}", "sport") for i in range(5)]
    (tmp_path / "split.csv").write_text(_rows(*rows))
    _, names = clean_and_split(source_chunks({**table_cfg(tmp_path / "split.csv"), "label_case": "distinct"}), 0.2,
                               0.2, seed=0)
    assert names == ["Sport", "sport"]  # the streamed path types the labels once the column is read: the same rule
    root = write_folder(tmp_path / "news", {"sport/1.txt": "goal match", "Sport/2.txt": "team coach"})
    assert load_source({"source": "folder", "path": str(root), "label_case": "distinct"})["train"] == (
        ["team coach", "goal match"], ["Sport", "sport"])


def test_surrounding_white_space_of_a_label_is_stripped(tmp_path):
    (tmp_path / "spaced.csv").write_text('text,label\ngoal match, sport\nbread soup,"food "\nchip code,\ttech\n')
    texts, labels = load_source(table_cfg(tmp_path / "spaced.csv"))["train"]
    assert labels == ["sport", "food", "tech"]
    root = write_folder(tmp_path / "news", {" sport/1.txt": "goal match", "food /2.txt": "bread soup"})
    assert load_source({"source": "folder", "path": str(root)})["train"] == (["bread soup", "goal match"],
                                                                             ["food", "sport"])


def test_boolean_labels_in_any_case_stay_one_class(tmp_path):
    (tmp_path / "bools.csv").write_text(_rows(("goal match", "true"), ("bread soup", "FALSE"), ("chip", "True")))
    assert load_source(table_cfg(tmp_path / "bools.csv"))["train"][1] == ["True", "False", "True"]


def _split(cfg):
    return clean_and_split(source_chunks(cfg), 0.2, 0.2, seed=0)


def test_one_text_with_two_labels_is_refused(tmp_path):
    rows = [(f"goal match team {i}", "sport") for i in range(6)] + [("bread soup cheese", "food")] * 2
    rows += [("goal match team 3", "food")]  # line 10; the same text on line 5 is sport
    (tmp_path / "clash.csv").write_text(_rows(*rows))
    with pytest.raises(DataError) as err:
        _split(table_cfg(tmp_path / "clash.csv"))
    assert str(err.value) == (f"{tmp_path / 'clash.csv'}: lines 5 and 10 have the same text ('goal match team 3') but "
                              "labels 'sport' and 'food'; valid: one label per text (correct or remove one of them)")


def test_one_long_text_with_two_labels_in_a_folder_is_refused(tmp_path):
    text = "goal match team coach league player ball score " * 3
    root = write_folder(tmp_path / "news", {"sport/1.txt": text, "sport/2.txt": "team coach", "food/3.txt": "soup",
                                            "food/4.txt": text.replace(" ", "  ")})  # the same words: the same text
    with pytest.raises(DataError) as err:
        _split({"source": "folder", "path": str(root)})
    assert str(err.value) == (f"{root}: food/4.txt and sport/1.txt have the same text ({text[:60]!r}) but labels "
                              "'food' and 'sport'; valid: one label per text (correct or remove one of them)")


def test_one_text_under_two_spellings_of_a_number_is_one_class_kept_once(tmp_path):
    rows = [(f"goal match team {i}", "1") for i in range(6)] + [(f"bread soup {i}", "2") for i in range(6)]
    (tmp_path / "numbers.csv").write_text(_rows(*rows, ("goal match team 0", "1.0"), ("bread soup 0", "2")))
    splits, names = _split(table_cfg(tmp_path / "numbers.csv"))
    assert names == ["1", "2"]
    assert sorted(t for texts, _ in splits.values() for t in texts) == sorted(t for t, _ in rows)


def test_a_repeated_column_the_job_does_not_read_is_left_alone(tmp_path):
    """An export with two ``notes`` columns trains on ``text`` and ``label``; a repeated column it reads is refused."""
    (tmp_path / "notes.csv").write_text("text,notes,label,notes\ngoal match,a,sport,b\nbread soup,c,food,d\n")
    assert load_source(table_cfg(tmp_path / "notes.csv"))["train"] == (["goal match", "bread soup"], ["sport", "food"])
    with pytest.raises(DataError, match="the header names column\\(s\\) 'notes' more than once"):
        load_source({**table_cfg(tmp_path / "notes.csv"), "text_column": "notes"})
