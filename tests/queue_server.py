"""A scheduler process over a queue file, running tests/queue_fake_child.py jobs (restart tests).

``queue_server.py QUEUE.db SLOTS`` runs until killed.
"""

import sys
import threading
from pathlib import Path

from reidbench.queue.scheduler import Scheduler
from reidbench.queue.store import Store

FAKE = [sys.executable, str(Path(__file__).with_name("queue_fake_child.py"))]

if __name__ == "__main__":
    store = Store(Path(sys.argv[1]))
    units = [f"cpu{i}" for i in range(int(sys.argv[2]))]
    scheduler = Scheduler(store, units, child=FAKE, poll_s=0.1, grace_s=2)
    print("scheduler up", flush=True)
    scheduler.run_forever(threading.Event())
