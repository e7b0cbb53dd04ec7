"""Samplers that make training resumable mid-epoch and evaluation exact across processes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler

# Megabatches of up to this many global batches are sorted by length (Hugging Face Trainer's group_by_length value).
MEGABATCH_BATCHES = 50


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
        return self._skip_seen(list(super().__iter__()))

    def _skip_seen(self, indices: list[int]) -> Iterator[int]:
        if self._skip_epoch == self.epoch:
            indices = indices[self._skip:]
            self._skip_epoch = None  # only the interrupted pass is shortened
        return iter(indices)


class LengthGroupedSampler(ResumableSampler):
    """``ResumableSampler`` whose batches hold examples of similar lengths, so dynamic padding pads little.

    Each epoch's seeded permutation is cut into megabatches of up to ``MEGABATCH_BATCHES`` global batches (the
    batch size times the number of ranks), each sorted longest first; the megabatch order stays random, and the
    longest example of the epoch leads, so a batch that does not fit in memory fails at once (as in Hugging Face
    Trainer's ``group_by_length``). Ranks take every ``num_replicas``-th index of that order, so the batches the
    ranks step together also have similar lengths. Resumption skips what a checkpoint saw, as in the parent.
    """

    def __init__(self, dataset: Dataset, lengths: list[int], batch_size: int, seed: int, num_replicas: int = 1,
                 rank: int = 0):
        super().__init__(dataset, seed, num_replicas, rank)
        self.lengths = lengths
        self.batch_size = batch_size

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        global_batch = self.batch_size * self.num_replicas
        size = global_batch * max(1, min(len(order) // (global_batch * 4), MEGABATCH_BATCHES))
        megabatches = [sorted(order[i:i + size], key=lambda j: -self.lengths[j]) for i in range(0, len(order), size)]
        longest = max(range(len(megabatches)), key=lambda m: self.lengths[megabatches[m][0]])
        megabatches[0][0], megabatches[longest][0] = megabatches[longest][0], megabatches[0][0]
        order = [i for megabatch in megabatches for i in megabatch]
        # As DistributedSampler: repeat from the start until every rank gets num_samples.
        order = (order * math.ceil(self.total_size / len(order)))[:self.total_size]
        return self._skip_seen(order[self.rank:self.total_size:self.num_replicas])


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
