"""A healthy job whose ranks end at different times: rank 1 returns at once after the last
collective, rank 0 works 1.5 s longer (as rank 0 does when it writes the outputs). The exit
hook must not abort it: the job ends with status 0.

    mpiexec -n 2 python end_apart.py
"""

import time

from chainrule import distributed as dist

dist.init(timeout=30)
total = dist.allreduce_sum(dist.rank() + 1)
if dist.is_main():
    time.sleep(1.5)
print(f"rank {dist.rank()} done: {total}", flush=True)
