"""Rank 1 builds a wider model than rank 0: the broadcast must refuse, not mix up weights."""

from chainrule import distributed as dist
from chainrule import nn

with dist.abort_on_error():
    dist.DistributedDataParallel(nn.Linear(4, 3 + dist.rank()))
    print("broadcast went through")
