"""Samplers that make training resumable mid-epoch and evaluation exact across processes."""

from __future__ import annotations

from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """Seeded shuffling per epoch (``seed + epoch``), sharded across ranks, that can skip what a checkpoint saw.

    A ``DistributedSampler`` so Lightning keeps it under DDP instead of wrapping it. ``resume(epoch, n)`` makes
    the next pass over ``epoch`` start after its first ``n`` samples (per rank), so an interrupted epoch
    continues with exactly the batches it had not trained on yet.
    """

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self._skip_epoch: int | None = None
        self._skip = 0

    def resume(self, epoch: int, samples_seen: int) -> None:
        self.set_epoch(epoch)
        self._skip_epoch, self._skip = epoch, samples_seen

    def __iter__(self):
        indices = list(super().__iter__())
        if self._skip_epoch == self.epoch:
            indices = indices[self._skip:]
            self._skip_epoch = None  # only the interrupted pass is shortened
        return iter(indices)


class ExactDistributedSampler(DistributedSampler):
    """Evaluation sharding without padding: every example is scored exactly once across ranks.

    ``DistributedSampler`` pads the last shard with duplicates, which would bias test metrics; torchmetrics
    syncs metric states, so uneven shards are fine.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples
