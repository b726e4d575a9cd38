"""A few Adam steps with DistributedDataParallel over a sharded dataset; rank 0 saves the result.

    python ddp_steps.py OUT.safetensors              # one process, global batch 24
    mpiexec -n 2 python ddp_steps.py OUT.safetensors  # two processes, 12 samples each per step
"""

import sys

import numpy as np

import chainrule as cr
from chainrule import distributed as dist
from chainrule import nn
from chainrule.nn import functional as F

GLOBAL_BATCH = 24


class WithUnusedLayer(nn.Module):
    """An MLP plus a layer that never gets a gradient (its grad stays None on every rank)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.body(x)


def main(out):
    dist.init()
    cr.manual_seed(100 + dist.rank())  # different initial weights: the broadcast must fix it
    model = dist.DistributedDataParallel(WithUnusedLayer())
    optimizer = cr.optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    data = cr.data.TensorDataset(rng.standard_normal((96, 8)).astype(np.float32),
                                 rng.integers(0, 3, 96))
    loss_sum, seen = 0.0, 0
    for epoch in range(2):
        local = dist.shard(data, epoch, seed=7)
        loader = cr.data.DataLoader(local, batch_size=GLOBAL_BATCH // dist.world_size())
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            model.allreduce_gradients()
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            seen += len(yb)
    loss_sum, seen = dist.allreduce_sum(loss_sum), dist.allreduce_sum(seen)
    assert isinstance(seen, int), f"a count summed over ranks should stay an int: {seen!r}"
    if dist.is_main():
        state = dict(model.state_dict())
        state["loss_sum"] = cr.tensor(np.float64(loss_sum))
        state["seen"] = cr.tensor(np.int64(seen))
        state["unused_grad_is_none"] = cr.tensor(np.int64(model.unused.weight.grad is None))
        cr.save(state, out)


if __name__ == "__main__":
    with dist.abort_on_error():
        main(sys.argv[1])
