"""Rank 1 raises while rank 0 waits in a collective: the whole job must end, with rank 1's error."""

import chainrule as cr
from chainrule import distributed as dist

dist.init()
with dist.abort_on_error():
    if dist.rank() == 1:
        raise ValueError("rank one broke on purpose")
    dist.barrier()  # rank 0 would wait here forever without the abort
    dist.allreduce_sum(cr.tensor(1.0).item())
