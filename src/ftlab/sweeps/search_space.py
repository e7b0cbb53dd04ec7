"""The conditional part of the Optuna search (``hparams_search=optuna``): options that only some strategies have.

Hydra's Optuna sweeper declares a flat space; ``strategy.trainable_layers`` exists only for ``strategy=partial``, and
setting it on ``full`` or ``head_only`` is an error (strict options). The sweeper calls ``partial_layers`` for each
trial after the flat space is sampled (``hydra.sweeper.custom_search_space``).
"""

from __future__ import annotations

SEARCH_OPTIONS = ("max_layers", "storage", "study", "trial")  # keys under ``search:`` (conf/hparams_search/optuna.yaml)


def partial_layers(cfg, trial) -> None:
    """Search ``strategy.trainable_layers`` in 1..``search.max_layers`` for trials of the partial strategy only."""
    if trial.params.get("strategy") == "partial":
        trial.suggest_int("strategy.trainable_layers", 1, int(cfg.search.max_layers))
