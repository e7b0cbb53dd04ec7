"""monitor_mode follows monitor: one rule for which direction a metric improves in."""

from __future__ import annotations

import pytest

from ftlab.core.metric_names import lower_is_better, monitor_mode
from tests.helpers import compose


@pytest.mark.parametrize(("metric", "mode"), [("val/loss", "min"), ("val/ppl", "min"), ("test/ppl", "min"),
                                              ("val/acc", "max"), ("val/f1", "max"), ("retention/cka", "max")])
def test_direction_of_a_metric(metric, mode):
    assert monitor_mode(metric) == mode and lower_is_better(metric) is (mode == "min")


@pytest.mark.parametrize(("overrides", "mode"), [
    ([], "max"),  # the default monitor, val/acc
    (["monitor=val/loss"], "min"),
    (["experiment=lm_bbc"], "min"),  # val/ppl
    (["experiment=ner_wnut"], "max"),  # val/f1
    (["monitor=val/loss", "monitor_mode=min"], "min"),  # configs that spell it out keep working
])
def test_the_composed_config_derives_monitor_mode(overrides, mode):
    cfg = compose(overrides)
    assert cfg.monitor_mode == mode and cfg.callbacks.model_checkpoint.mode == mode
