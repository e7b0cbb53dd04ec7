"""Test helpers: tiny checkpoints and data written to disk, config composition, W&B log reading."""

from __future__ import annotations

import json
import os
import random
import struct
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]  # the repository
CONF_DIR = ROOT / "conf"

CLASS_WORDS = {
    "food": "bread cheese pasta soup apple butter rice salad".split(),
    "sport": "goal match team score coach league player ball".split(),
    "tech": "chip software laptop code server cloud phone robot".split(),
}
SHARED_WORDS = "the a today news new big".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_bert(directory: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A BERT base model (no task head, like a real pretrained checkpoint) and its WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + SHARED_WORDS + sorted(w for words in CLASS_WORDS.values() for w in words)
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(directory)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64,
                        initializer_range=0.2)
    BertModel(config).save_pretrained(directory)
    return directory


def make_tiny_csv(path: Path, per_class: int = 20, duplicates: int = 0, seed: int = 0) -> Path:
    """A learnable 3-class csv: each text mixes its class's words with shared filler words."""
    rng = random.Random(seed)
    rows = []
    for label, words in CLASS_WORDS.items():
        for _ in range(per_class):
            text = " ".join(rng.choice(words + SHARED_WORDS) for _ in range(rng.randint(4, 12)))
            rows.append((text, label))
    rows += rows[:duplicates]
    rng.shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["text,label"] + [f"{t},{l}" for t, l in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def compose(overrides: list[str]):
    """Compose ``conf/config.yaml`` with overrides, as ``run.py`` would (without the hydra node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def tiny_overrides(model_dir: Path, csv: Path, out_dir: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU job on the tiny model and data."""
    return [
        "model=hf", f"model.pretrained_model_name_or_path={model_dir}",
        "data=local", f"data.path={csv}", f"output_dir={out_dir}",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "batch_size=8", "max_length=16",
        "logger=none", *extra,
    ]


BLOCK = 32768
HEADER = 7


def read_wandb_records(path: Path) -> list:
    """Parse a W&B ``.wandb`` transaction log into ``wandb.proto`` ``Record`` messages.

    The file is a 7-byte header (``:W&B``, magic, version) then 32 KiB blocks of records, each with a
    header ``<crc32 uint32, length uint16, type uint8>``; types FULL=1, FIRST=2, MIDDLE=3, LAST=4.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B log"
    pos, payload, records = HEADER, b"", []
    while pos + HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # block tail too small for a header is zero padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0:
            break
        payload = chunk if kind in (1, 2) else payload + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(payload)
            records.append(record)
    return records



class SignalAt(L.Callback):
    """Sends this process a signal before training step ``step`` (first run only, not after a resume)."""

    def __init__(self, step: int, signum: int = 15):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.ckpt_path is None and trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class SlowSteps(L.Callback):
    """Sleeps after every training step, to keep a tiny job running for a while."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


NER_WORDS = {"PER": ["john", "mary", "ahmed", "li"], "LOC": ["paris", "london", "lagos"], "ORG": ["google", "unicef"]}
NER_FILLER = "met visited works at in with today and the".split()
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")


def make_tiny_ner_bert(directory: Path, seed: int = 0) -> Path:
    """A tiny BERT whose WordPiece vocab splits some words into sub-tokens (``##s``, ``##plex``, ``new`` ``york``)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({w for ws in NER_WORDS.values() for w in ws} | set(NER_FILLER) | {"new", "york"})
    vocab = SPECIAL + words + ["##s", "##plex"]
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(directory)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, initializer_range=0.2)
    BertModel(config).save_pretrained(directory)
    return directory


def make_tiny_conll(path: Path, sentences: int = 60, seed: int = 0) -> Path:
    """A learnable CoNLL file: entity words tagged B-/I-<type> (``new york`` is a two-word LOC), filler words O."""
    rng = random.Random(seed)
    lines = ["-DOCSTART-\tO", ""]
    for _ in range(sentences):
        for _ in range(rng.randint(3, 8)):
            if rng.random() < 0.35:
                kind = rng.choice(sorted(NER_WORDS))
                if kind == "LOC" and rng.random() < 0.3:
                    lines += ["new\tB-LOC", "york\tI-LOC"]
                else:
                    lines.append(f"{rng.choice(NER_WORDS[kind])}\tB-{kind}")
            else:
                lines.append(f"{rng.choice(NER_FILLER)}\tO")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


LM_WORDS = "the cat dog sat ran on a mat log and then slept ate fish quickly".split()


def make_tiny_llama(directory: Path, layers: int = 3, tie: bool = True, seed: int = 0) -> Path:
    """A tiny LLaMA causal LM with a word-level fast tokenizer that has BOS/EOS and a chat template."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "<|im_end|>", "<|im_start|>", "user", "assistant"]
    vocab = {t: i for i, t in enumerate(specials + LM_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="<|im_end|>", pad_token="<|im_end|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def make_tiny_text(path: Path, documents: int = 40, seed: int = 0) -> Path:
    """A jsonl of short formulaic stories (text, and the same story as prompt / response): a tiny LM learns them."""

    rng = random.Random(seed)
    clauses = ["sat on a mat", "sat on a log", "ate fish", "ran quickly", "slept", "ran on a log"]
    rows = []
    for _ in range(documents):
        animal = rng.choice(["cat", "dog"])
        story = [f"the {animal} {rng.choice(clauses)}"] + [f"and then the {animal} {rng.choice(clauses)}"
                                                           for _ in range(rng.randint(1, 3))]
        rows.append({"text": " ".join(story), "prompt": story[0], "response": " ".join(story[1:])})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def finished_wandb_records(path: Path, timeout: float = 20.0) -> list:
    """The records of a finished offline run, once its exit record is on disk: W&B's service process writes the log
    behind a buffer, so on a busy machine the last records can land a moment after ``wandb.finish`` returns."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        records = read_wandb_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def wandb_run(wandb_file):
    """The run record (id, name) and the final summary of one offline W&B run file."""
    records = read_wandb_records(wandb_file)
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
    return next(r.run for r in records if r.WhichOneof("record_type") == "run"), summary


def make_tiny_ner_roberta(directory: Path, seed: int = 0) -> Path:
    """A tiny RoBERTa with a byte-level BPE tokenizer (GPT-2 style: a word's leading space is part of its token)
    trained on the NER words, with a vocabulary small enough that some words split into several sub-tokens."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({w for ws in NER_WORDS.values() for w in ws} | set(NER_FILLER) | {"new", "york"})
    bpe = ByteLevelBPETokenizer()
    # " new york" repeated makes whole-word merges for the common words; rarer words stay in pieces.
    bpe.train_from_iterator([" " + " ".join(words)] * 3 + [" new york london paris"] * 20, vocab_size=340,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                         unk_token="<unk>", mask_token="<mask>", model_max_length=64).save_pretrained(directory)
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=bpe.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=37, max_position_embeddings=66, initializer_range=0.2, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    RobertaModel(config).save_pretrained(directory)
    return directory


class TrainingModes(L.Callback):
    """Records, before every training step, which of the model's parameter-holding modules are in train mode."""

    seen: list[dict[str, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        TrainingModes.seen.append({name: module.training for name, module in pl_module.model.named_modules()
                                   if any(True for _ in module.parameters(recurse=False))})


def make_tiny_classifier(base: Path, directory: Path, labels: tuple[str, ...] = ("food", "sport", "tech"),
                         seed: int = 0) -> Path:
    """What a text classification job exports to ``model/``: the tiny BERT ``base`` with a fresh head for ``labels``,
    and its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(base).save_pretrained(directory)
    return directory
