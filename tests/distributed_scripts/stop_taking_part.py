"""`chainrule train --distributed` in which rank 1 stops taking part in the middle of epoch 1.

    mpiexec -n 2 python stop_taking_part.py hang|exit OUT_DIR CPU_LOG [TIMEOUT]

hang: rank 1 sleeps forever in a step (the others must time out, naming it).
exit: rank 1 waits 2 s, then calls sys.exit(0) (the others must see that it left).
Rank 0 writes "wall cpu" (time.perf_counter, time.process_time) to CPU_LOG every 0.1 s, so the
test can see how much CPU it burns while it waits.
"""

import sys
import threading
import time

from chainrule import cli, distributed, training

STEP = 15  # rank 1 stops at this step of epoch 1 (of 40)


def log_cpu(path):
    with open(path, "w") as log:
        while True:
            log.write(f"{time.perf_counter():.4f} {time.process_time():.4f}\n")
            log.flush()
            time.sleep(0.1)


def stop_at_step(mode):
    loss_of, calls = training.loss_of, [0]

    def stopping_loss_of(*args, **kwargs):
        calls[0] += 1
        if calls[0] == STEP:
            print(f"rank 1 stops: {mode}", file=sys.stderr, flush=True)
            if mode == "hang":
                threading.Event().wait()  # forever
            time.sleep(2)
            sys.exit(0)
        return loss_of(*args, **kwargs)

    training.loss_of = stopping_loss_of


def main(mode, out, cpu_log, timeout="30"):
    distributed.init()
    if distributed.rank() == 0:
        threading.Thread(target=log_cpu, args=(cpu_log,), daemon=True).start()
    elif distributed.rank() == 1:
        stop_at_step(mode)
    return cli.main(["train", "--distributed", "--timeout", timeout, "--epochs", "3",
                     "--hidden", "32", "--no-progress", "--out", out])


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
