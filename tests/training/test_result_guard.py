"""A fit that trained nothing, or whose weights are not numbers, is never exported as a result."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from ftlab.core.checks import ConfigError, FtlabError
from ftlab.training.result_guard import check_finite, check_steps
from ftlab.training.validation_schedule import check_interval_fits


def test_zero_steps_is_refused_and_one_passes():
    with pytest.raises(FtlabError, match="^the fit made 0 optimizer steps, so there is no fine-tuned model"):
        check_steps(0)
    check_steps(1)


def test_weights_with_nan_or_inf_are_refused_naming_the_first():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    check_finite(model.named_parameters())
    with torch.no_grad():
        model[1].bias[0] = float("nan")
        model[0].weight[0, 0] = float("inf")
    with pytest.raises(FloatingPointError) as exc:
        check_finite(model.named_parameters())
    assert str(exc.value) == ("2 weight tensor(s) to export are not finite (0.weight, ...): training diverged; "
                              "nothing was exported, lower lr")
    check_finite([("steps", torch.tensor([1, 2]))])  # integer buffers are not weights


@pytest.mark.parametrize("trainer, batches, message", [
    ({"val_check_interval": 30}, 12, "trainer.val_check_interval=30: an epoch has 12 training batches; valid: 1..12"),
    ({"val_check_interval": 8, "limit_train_batches": 5}, 12, "an epoch has 5 training batches; valid: 1..5"),
    ({"val_check_interval": 8, "limit_train_batches": 0.5}, 12, "an epoch has 6 training batches"),
])
def test_a_validation_interval_longer_than_the_epoch_is_one_line(trainer, batches, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_interval_fits(OmegaConf.create(trainer), batches)


def test_each_process_counts_its_share_of_the_batches():
    check_interval_fits(OmegaConf.create({"val_check_interval": 6}), 12, processes=2)
    with pytest.raises(ConfigError, match="an epoch has 6 training batches; valid: 1..6"):
        check_interval_fits(OmegaConf.create({"val_check_interval": 10}), 12, processes=2)


@pytest.mark.parametrize("trainer, batches", [
    ({"val_check_interval": 12}, 12), ({"val_check_interval": 0.5}, 3), ({"val_check_interval": None}, 3),
    ({"val_check_interval": 30, "check_val_every_n_epoch": None}, 12), ({"val_check_interval": 30}, None),
])
def test_intervals_that_fit_pass(trainer, batches):
    check_interval_fits(OmegaConf.create({"check_val_every_n_epoch": 1, **trainer}), batches)
