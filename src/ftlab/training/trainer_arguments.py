"""Every argument of ``lightning.Trainer`` that a config may set (``trainer.<name>`` or ``++trainer.<name>=``), with the
check it gets before anything heavy loads, or the reason it is refused or passed through untouched.

Lightning checks some of these late (a traceback after the data and model loaded) and accepts others that make the
job's result wrong without a word: ``overfit_batches`` validates on training batches, ``limit_val_batches=0`` leaves
no validation to choose the best checkpoint, ``use_distributed_sampler=false`` gives every process all the data.
One table holds them all, so the catalogue in the docs and the tests cannot drift from what is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ftlab.core.checks import Checker, is_int, is_number

Rule = Callable[[Any], str | None]  # the problem with a value ("must be ..."), or None


def _yaml(value: Any) -> str:
    """A value as written in YAML: true, false, null."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def integer(low: int, *special: int, optional: bool = False) -> Rule:
    """An integer >= ``low``, or one of ``special`` (Lightning's -1 for "no limit"), or null when ``optional``."""
    extra = "".join(f" or {s}" for s in special) + (" or null" if optional else "")

    def rule(value: Any) -> str | None:
        if (value is None and optional) or (is_int(value) and (value >= low or value in special)):
            return None
        return f"must be an integer >= {low}{extra}"
    return rule


def batches(value: Any) -> str | None:
    """``limit_*_batches``: null (all), a count >= 1, or a fraction in (0, 1]; 0 would skip the stage."""
    if value is None or (is_int(value) and value >= 1) or (is_number(value) and 0 < value <= 1):
        return None
    return "must be null (all batches), a number of batches >= 1 or a fraction in (0, 1]"


def interval(value: Any) -> str | None:
    """``val_check_interval``: null, every N >= 1 training batches, or a fraction of an epoch in (0, 1]."""
    if value is None or (is_int(value) and value >= 1) or (is_number(value) and 0 < value <= 1):
        return None
    return "must be null, a number of training batches >= 1, or a fraction of an epoch in (0, 1]"


def number(low: float, optional: bool = True) -> Rule:
    """A finite number >= ``low`` (or null)."""
    def rule(value: Any) -> str | None:
        if (value is None and optional) or (is_number(value) and value >= low):
            return None
        return f"must be a finite number >= {low}" + (" or null" if optional else "")
    return rule


def choice(*choices: Any) -> Rule:
    """One of ``choices`` (``True``/``False``/``None`` written as true/false/null)."""
    def rule(value: Any) -> str | None:
        if any(value is c if c is None or isinstance(c, bool) else value == c for c in choices):
            return None
        return f"valid: {', '.join(_yaml(c) for c in choices)}"
    return rule


def only(value: Any, why: str) -> Rule:
    """Refused unless it keeps ``value`` (or null, Lightning's default): ``why`` says what ftlab needs it for."""
    def rule(given: Any) -> str | None:
        if given is None or given == value:  # False == 0: fast_dev_run=false and =0 are the same
            return None
        return f"{why}; valid: {_yaml(value)} (or absent)"
    return rule


def passed(why: str) -> Rule:
    """Passed to Lightning untouched; ``why`` says why ftlab need not check it."""
    def rule(value: Any) -> None:
        return None
    rule.__doc__, rule.passed = why, True  # not even resolved: default_root_dir needs a running Hydra app
    return rule


TIME_UNITS = ("weeks", "days", "hours", "minutes", "seconds", "milliseconds", "microseconds")  # timedelta's


def max_time(value: Any) -> str | None:
    """Lightning's time limit: null, ``"DD:HH:MM:SS"`` or a mapping of ``timedelta`` units."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            return None
    elif hasattr(value, "items") and value and all(
            k in TIME_UNITS and is_number(v) and v >= 0 for k, v in value.items()):
        return None
    return f"must be null, \"DD:HH:MM:SS\" or a mapping of {'/'.join(TIME_UNITS)} >= 0"


def profiler(value: Any) -> str | None:
    """A Lightning profiler by name, or a ``_target_`` spec Hydra instantiates (a Profiler class)."""
    if value is None or (isinstance(value, str) and value.lower() in ("simple", "advanced", "pytorch", "xla")):
        return None
    if hasattr(value, "get") and isinstance(value.get("_target_"), str):
        return None
    return "valid: null, simple, advanced, pytorch, xla, or a _target_ spec of a lightning.pytorch.profilers class"


BOOL = choice(True, False)
OWNED = "checked by ftlab's trainer settings (validate._check_hardware and core.trainer_settings)"
# name -> rule. Every parameter of lightning.Trainer has a row (tests/training/test_trainer_arguments.py holds it to
# the signature), so a Lightning upgrade that adds one fails a test rather than passing it through unseen.
TRAINER_ARGUMENTS: dict[str, Rule] = {
    "accelerator": passed(OWNED),
    "strategy": passed(OWNED),
    "devices": passed(OWNED),
    "num_nodes": passed(OWNED),
    "precision": passed(OWNED),
    "logger": only(None, "ftlab builds the loggers from the logger group (logger=wandb, logger=csv)"),
    "callbacks": only(None, "ftlab builds the callbacks from the callbacks group (+callbacks.<name>._target_=...)"),
    "fast_dev_run": only(False, "it runs a batch or two with no checkpoint or logger, so the job would export an "
                                "untrained model as its result; for a quick check use debug=smoke"),
    "max_epochs": integer(1, -1, optional=True),
    "min_epochs": integer(0, optional=True),
    "max_steps": integer(1, -1),
    "min_steps": integer(0, optional=True),
    "max_time": max_time,
    "limit_train_batches": batches,
    "limit_val_batches": batches,
    "limit_test_batches": batches,
    "limit_predict_batches": passed("ftlab predicts without the Trainer (ftlab predict)"),
    "overfit_batches": only(0, "it validates and tests on training batches, so val/ and test/ metrics would be "
                               "training metrics"),
    "val_check_interval": interval,
    "check_val_every_n_epoch": integer(1, optional=True),
    "num_sanity_val_steps": integer(0, -1, optional=True),
    "log_every_n_steps": integer(1, optional=True),
    "enable_checkpointing": only(True, "the best checkpoint (chosen on validation) is what the job tests and "
                                       "exports, and last.ckpt is what resume= continues"),
    "enable_progress_bar": choice(True, False, None),
    "enable_model_summary": choice(True, False, None),
    "accumulate_grad_batches": integer(1),
    "gradient_clip_val": number(0),
    "gradient_clip_algorithm": choice("norm", "value", None),
    "deterministic": choice(True, False, "warn", None),
    "benchmark": choice(True, False, None),
    "inference_mode": BOOL,
    "use_distributed_sampler": passed("ftlab's loaders shard by rank themselves (data/samplers.py: distributed "
                                      "samplers Lightning keeps), so either value splits the data the same way"),
    "profiler": profiler,
    "detect_anomaly": BOOL,
    "barebones": only(False, "it turns off logging, checkpoints and the progress bar, which a job's result needs"),
    "plugins": passed("instantiated by Hydra from _target_ specs; Lightning checks each plugin's type"),
    "sync_batchnorm": BOOL,
    "reload_dataloaders_every_n_epochs": integer(0),
    "default_root_dir": passed("set to output_dir by conf/trainer/default.yaml"),
    "enable_autolog_hparams": BOOL,
    "model_registry": passed("a name for Lightning's model registry upload, unused by ftlab"),
}


def check_trainer_arguments(c: Checker) -> None:
    """Each ``trainer.<argument>`` the config sets is a value its row of ``TRAINER_ARGUMENTS`` accepts; unknown
    arguments are the business of ``Checker.target_arguments`` (run on the trainer group by validation)."""
    node = c.get("trainer")
    if not hasattr(node, "keys"):
        return
    for name in node.keys():
        rule = TRAINER_ARGUMENTS.get(str(name))
        if rule is not None and not getattr(rule, "passed", False) and (problem := rule(c.plain(f"trainer.{name}"))):
            c.fail(f"trainer.{name}", problem)
    max_epochs, max_steps = c.get("trainer.max_epochs"), c.get("trainer.max_steps")
    if max_epochs == -1 and max_steps in (None, -1) and c.get("trainer.max_time") is None:
        c.fail("trainer.max_epochs", "-1 trains forever unless trainer.max_steps or trainer.max_time ends it; valid: "
                                     "a number of epochs >= 1, or set trainer.max_steps")


def catalogue() -> list[tuple[str, str]]:
    """(argument, what is accepted or why it is passed through) for every row of ``TRAINER_ARGUMENTS``: the table in
    docs/safety.md, which a test holds to this."""
    probe = object()  # a value no rule accepts, so each rule states what it does accept
    return [(name, f"passed through: {rule.__doc__}" if getattr(rule, "passed", False) else rule(probe))
            for name, rule in TRAINER_ARGUMENTS.items()]
