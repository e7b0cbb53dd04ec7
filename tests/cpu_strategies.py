"""Lightning's FSDP and DeepSpeed strategies on CPU processes (gloo), for tests only.

Lightning refuses both on CPU. PyTorch's FSDP runs on CPU when told ``device_id=cpu``; offloading a full state dict
to CPU crashes when the shards already live on CPU (a segfault in torch 2.13), so full state dicts are gathered in
place. DeepSpeed runs on its CPU accelerator once Lightning skips its CUDA checks and hands it a device index (the
local rank). Everything else is Lightning's code path.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy
from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, OptimStateKeyType, StateDictType
from torch.distributed.fsdp.api import FullOptimStateDictConfig
from torch.distributed.fsdp.wrap import enable_wrap


class CPUFSDPStrategy(FSDPStrategy):
    @contextmanager
    def model_sharded_context(self):
        with enable_wrap(wrapper_cls=FullyShardedDataParallel, cpu_offload=self.cpu_offload,
                         mixed_precision=self.mixed_precision_config, sharding_strategy=self.sharding_strategy,
                         device_id=torch.device("cpu"), **self.kwargs):
            yield

    def _full_state_dict(self):
        return FullyShardedDataParallel.state_dict_type(
            self.model, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=False, rank0_only=True),
            FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=True))

    def lightning_module_state_dict(self):
        with self._full_state_dict():
            return self.model.state_dict()

    def optimizer_state(self, optimizer):
        optimizer = getattr(optimizer, "_optimizer", optimizer)
        with self._full_state_dict():
            state = FullyShardedDataParallel.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:
                state = FullyShardedDataParallel.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    def setup_environment(self):
        DDPStrategy.setup_environment(self)  # skips DeepSpeedStrategy's CUDA-only check

    def setup_distributed(self):
        reset_seed()  # as DeepSpeedStrategy does, without its check that device indices equal local ranks
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    @property
    def root_device(self):
        return torch.device("cpu", self.local_rank)  # DeepSpeed reads the index as this rank's device
