"""The number of tokens per text a model was trained and tested at, so that ``ftlab.predict`` and ``ftlab.serve``
read texts the way the job's test metrics were measured (a model trained at 128 tokens and served at 512 sees text it
never saw in training, and its answers are not the ones the job reported).

Where it is found: ``ftlab.json`` in the model directory, which a job writes when it exports the model (so the value
travels with the model, also when it is copied into another job's directory); else the saved config of the job whose
``model/`` it is (``<job>/.hydra/config.yaml``, key ``max_length``). The saved config is read as plain YAML and never
resolved: it may come from someone else, and a resolver can run code. For the same reason a value longer than the
model reads is refused (``serving_max_length``), naming the file it came from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ftlab.core.checks import FtlabError, is_int

log = logging.getLogger(__name__)

RECORD = "ftlab.json"  # beside the exported model: what save_pretrained does not keep


def write_record(model_dir: Path, max_length: int) -> Path:
    """Write ``ftlab.json`` (the training ``max_length``) into an exported model directory."""
    path = Path(model_dir) / RECORD
    path.write_text(json.dumps({"max_length": max_length}, indent=2) + "\n", encoding="utf-8")
    return path


def _from_saved_config(saved: Path) -> int | None:
    """``max_length`` of a job's saved config; None when the config has no such key, or (with a warning) when it
    cannot be read as a number."""
    import yaml

    try:
        config = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        log.warning("%s: not readable (%s); the max_length the job trained at is taken from elsewhere", saved,
                    " ".join(str(err).split())[:200])
        return None
    if not isinstance(config, dict) or "max_length" not in config:
        return None  # nothing recorded: the value is taken from elsewhere, as for a job without a saved config
    value = config["max_length"]
    if is_int(value) and value > 0:
        return value
    log.warning("%s: max_length=%r is not a positive integer (an interpolation is never resolved here); the "
                "max_length the job trained at is taken from elsewhere", saved, value)
    return None


def _from_record(record: Path) -> int | None:
    try:
        value = json.loads(record.read_text(encoding="utf-8")).get("max_length")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return value if is_int(value) and value > 0 else None


def trained_max_length(model_dir: Path) -> tuple[int, Path] | None:
    """The ``max_length`` the model in ``model_dir`` was trained at and the file that says so, or None."""
    model_dir = Path(model_dir)
    # The model's own record first: a model copied into another job's directory keeps the length it was trained at.
    record = model_dir / RECORD
    if record.is_file() and (value := _from_record(record)) is not None:
        return value, record
    saved = model_dir.parent / ".hydra" / "config.yaml"
    if saved.is_file() and (value := _from_saved_config(saved)) is not None:
        return value, saved
    return None


def serving_max_length(model_dir: Path, given: int | None, default: int, limit: int | None = None) -> int:
    """Tokens per text to predict with: ``given`` (a command line's ``--max-length``), else the value the model was
    trained at, else ``default``. A ``given`` value other than the trained one is used, with a one-line warning
    naming both. A value above ``limit`` (the most tokens the model reads: its position embeddings) is an
    ``FtlabError`` naming where it came from (the command line, or the file that recorded it): every long text would
    fail inside the model. ``default`` is capped at ``limit``."""
    if given is not None and limit is not None and given > limit:
        raise FtlabError(f"--max-length {given}: the model reads at most {limit} tokens; valid: 1..{limit}")
    trained = trained_max_length(model_dir)
    if given is None:
        if trained is None:
            return default if limit is None else min(default, limit)
        value, source = trained
        if limit is not None and value > limit:
            raise FtlabError(f"{source}: max_length={value} (the length the model was trained at, by this file): the "
                             f"model reads at most {limit} tokens; valid: 1..{limit}; correct the file, or give "
                             "--max-length")
        return value
    if trained is not None and given != trained[0]:
        log.warning("--max-length %d: the model was trained and tested at max_length=%d (%s); predictions at %d "
                    "tokens may differ from the job's test results", given, trained[0], trained[1], given)
    return given
