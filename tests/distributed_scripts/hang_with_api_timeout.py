"""The Python API's timeout: the last rank hangs before a barrier; with init(timeout=1) the
others must end the job within seconds, one of them naming it.

    mpiexec -n 3 python hang_with_api_timeout.py
"""

import threading

from chainrule import distributed as dist

dist.init(timeout=1)
with dist.abort_on_error():
    dist.allreduce_sum(1)
    if dist.rank() == dist.world_size() - 1:
        threading.Event().wait()  # forever, outside any collective
    dist.barrier()
    print("the barrier went through")
