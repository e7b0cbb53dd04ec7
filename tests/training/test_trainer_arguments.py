"""Every argument of lightning.Trainer has a row in the table; each row accepts Lightning's valid values and refuses
the rest with one line, before anything loads."""

from __future__ import annotations

import inspect

import lightning as L
import pytest
from omegaconf import OmegaConf

from ftlab.core.checks import Checker
from ftlab.training.trainer_arguments import TRAINER_ARGUMENTS, check_trainer_arguments


def problems(**trainer) -> list[str]:
    c = Checker(OmegaConf.create({"trainer": trainer}))
    check_trainer_arguments(c)
    return c.problems


def test_the_table_has_a_row_for_every_argument_of_the_trainer():
    assert set(TRAINER_ARGUMENTS) == set(inspect.signature(L.Trainer).parameters)


def test_the_default_trainer_config_passes():
    defaults = OmegaConf.to_container(OmegaConf.load("conf/trainer/default.yaml"), resolve=False)
    assert problems(**{k: v for k, v in defaults.items() if k not in ("_target_", "default_root_dir")}) == []


GOOD = {
    "max_epochs": [1, 3, None], "min_epochs": [0, 2, None], "max_steps": [-1, 1, 500], "min_steps": [None, 0],
    "max_time": [None, "00:01:30:00", {"hours": 2, "minutes": 30}, {"weeks": 1, "milliseconds": 5}],
    "limit_train_batches": [None, 1, 50, 0.25, 1.0], "limit_val_batches": [0.5, 3], "limit_test_batches": [1.0],
    "overfit_batches": [0, 0.0], "val_check_interval": [None, 1, 100, 0.5, 1.0], "check_val_every_n_epoch": [1, None],
    "num_sanity_val_steps": [0, 2, -1], "log_every_n_steps": [1, 50], "enable_checkpointing": [True, None],
    "accumulate_grad_batches": [1, 4], "gradient_clip_val": [None, 0, 1.0], "gradient_clip_algorithm": ["norm", None],
    "deterministic": [True, False, "warn"],
    "profiler": [None, "simple", "Simple", "pytorch", "xla",
                 {"_target_": "lightning.pytorch.profilers.SimpleProfiler"}],
    "use_distributed_sampler": [True, False], "barebones": [False], "fast_dev_run": [False, 0],
    "reload_dataloaders_every_n_epochs": [0, 2],
    "inference_mode": [True, False], "logger": [None], "callbacks": [None],
}


@pytest.mark.parametrize("name, value", [(n, v) for n, values in GOOD.items() for v in values])
def test_valid_values_pass(name, value):
    assert problems(**{name: value, "max_steps": 10} if name == "max_epochs" else {name: value}) == []


BAD = {
    "max_epochs": (0, "trainer.max_epochs=0: must be an integer >= 1 or -1 or null"),
    "max_steps": (0, "trainer.max_steps=0: must be an integer >= 1 or -1"),
    "min_epochs": (-2, "trainer.min_epochs=-2: must be an integer >= 0 or null"),
    "max_time": ("2h", "trainer.max_time='2h': must be null, \"DD:HH:MM:SS\" or a mapping of "
                       "weeks/days/hours/minutes/seconds/milliseconds/microseconds >= 0"),
    "limit_train_batches": (0, "trainer.limit_train_batches=0: must be null (all batches), a number of batches >= 1 "
                               "or a fraction in (0, 1]"),
    "limit_val_batches": (0.0, "trainer.limit_val_batches=0.0: must be null (all batches)"),
    "limit_test_batches": (1.5, "trainer.limit_test_batches=1.5: must be null (all batches)"),
    "val_check_interval": (0, "trainer.val_check_interval=0: must be null, a number of training batches >= 1, or a "
                              "fraction of an epoch in (0, 1]"),
    "check_val_every_n_epoch": (0, "trainer.check_val_every_n_epoch=0: must be an integer >= 1 or null"),
    "accumulate_grad_batches": (True, "trainer.accumulate_grad_batches=True: must be an integer >= 1"),
    "gradient_clip_val": (float("inf"), "trainer.gradient_clip_val=inf: must be a finite number >= 0 or null"),
    "gradient_clip_algorithm": ("l2", "trainer.gradient_clip_algorithm='l2': valid: norm, value, null"),
    "deterministic": ("yes", "trainer.deterministic='yes': valid: true, false, warn, null"),
    "detect_anomaly": (1, "trainer.detect_anomaly=1: valid: true, false"),
    "overfit_batches": (2, "trainer.overfit_batches=2: it validates and tests on training batches, so val/ and test/ "
                           "metrics would be training metrics; valid: 0 (or absent)"),
    "fast_dev_run": (True, "trainer.fast_dev_run=True: it runs a batch or two with no checkpoint or logger, so the job "
                           "would export an untrained model as its result; for a quick check use debug=smoke; valid: "
                           "false (or absent)"),
    "enable_checkpointing": (False, "trainer.enable_checkpointing=False: the best checkpoint (chosen on validation) "
                                    "is what the job tests and exports"),
    "barebones": (True, "trainer.barebones=True: it turns off logging, checkpoints and the progress bar"),
    "logger": (True, "trainer.logger=True: ftlab builds the loggers from the logger group"),
    "profiler": ("fast", "trainer.profiler='fast': valid: null, simple, advanced, pytorch, xla, or a _target_ spec"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_value_is_one_line_naming_the_key(name):
    value, message = BAD[name]
    [problem] = problems(**{name: value})
    assert problem.startswith(message), problem


def test_an_endless_epoch_count_needs_another_limit():
    assert problems(max_epochs=-1, max_steps=-1) == [
        "trainer.max_epochs=-1: -1 trains forever unless trainer.max_steps or trainer.max_time ends it; valid: a "
        "number of epochs >= 1, or set trainer.max_steps"]
    assert problems(max_epochs=-1, max_steps=20) == problems(max_epochs=-1, max_time="00:00:10:00") == []


def test_the_docs_catalogue_is_the_table():
    from ftlab.training.trainer_arguments import catalogue
    from tests.helpers import ROOT

    docs = (ROOT / "docs" / "safety.md").read_text()
    for name, accepted in catalogue():
        assert f"| `{name}` | {accepted} |" in docs, name
