"""Hydra sweeper plugin of ftlab: the Optuna search of ``hparams_search=optuna`` (logic in ``ftlab.sweeps.search``)."""
