import subprocess
import sys

from nvc import workers

# A Ctrl-C between a pool's starting a thread and counting it for the wake-up at exit, as
# ThreadPoolExecutor._adjust_thread_count can be interrupted: the interpreter waits for that idle
# thread as it exits unless the pool was shut down (nvc.workers)
INTERRUPTED_START = """
import threading
from concurrent.futures import ThreadPoolExecutor
from nvc import workers
real = threading.Thread.start
def start_then_interrupted(self):
    real(self)
    raise KeyboardInterrupt
threading.Thread.start = start_then_interrupted
pool = POOL  # kept: a pool collected wakes its threads
try:
    pool.submit(int)
except KeyboardInterrupt:
    pass
threading.Thread.start = real
"""


def test_a_shared_pool_lets_the_process_exit_past_a_thread_a_ctrl_c_left_uncounted():
    """release() runs at exit before the threads are joined, whatever the entry point; a plain
    pool under the same interruption holds the exit (the fault is real)."""
    shared = INTERRUPTED_START.replace("POOL", "workers.shared('nvc-test', 1)")
    done = subprocess.run([sys.executable, "-c", shared], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    plain = INTERRUPTED_START.replace("POOL", "ThreadPoolExecutor(1)")
    held = subprocess.Popen([sys.executable, "-c", plain])
    try:
        held.wait(timeout=5)
        raise AssertionError("a plain pool's process exited: the test shows nothing")
    except subprocess.TimeoutExpired:
        pass
    finally:
        held.kill()
        held.wait()


def test_a_pool_asked_for_after_release_is_a_new_one_that_works():
    first = workers.shared("nvc-test", 2)
    assert workers.shared("nvc-test", 2) is first and workers.shared("nvc-test", 1) is not first
    workers.release()
    again = workers.shared("nvc-test", 2)
    assert again is not first and list(again.map(abs, [-1, -2])) == [1, 2]
    workers.release()


def test_release_cancels_the_work_not_started_so_no_late_thread_runs_it():
    """Work queued but not started is cancelled: a thread that a Ctrl-C left to start late finds
    nothing to run while the interpreter finalizes (nvc.workers); the work running finishes."""
    import threading

    started, gate = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(30)
    pool = workers.shared("nvc-test", 1)
    running, queued = pool.submit(hold), pool.submit(int)
    assert started.wait(30)
    workers.release()
    gate.set()
    assert running.result(timeout=30) is True and queued.cancelled()
