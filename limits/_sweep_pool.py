"""Executors of ``limits.sweep``: the default local process pool and what a coordinator needs
to know about any executor (its size, how to stop it, why it broke).

The default pool's workers exit as soon as their coordinator dies, even by SIGKILL: each
worker gets the read end of a pipe whose only write end the coordinator holds, and a daemon
thread in the worker exits the process when the pipe reports end-of-file (the kernel closes
the write end when the coordinator's process ends, however it ends).  When the workers are
gone, the fork server and the resource tracker exit by themselves (they stay only while a
process holds their pipes).  Executors passed by the caller are the caller's to stop.
"""
import ast
import concurrent.futures as cf
import multiprocessing
import os
import sys
import threading


def _cpu_count():
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _watch_parent(conn):
    """Pool initializer: exit this worker when the coordinator's end of ``conn`` closes."""
    def watch():
        try:
            conn.recv_bytes()            # the coordinator never sends: returns only at EOF
        except (EOFError, OSError):
            pass
        os._exit(70)

    threading.Thread(target=watch, name="sweep-coordinator-watch", daemon=True).start()


class OwnedPool:
    """The default pool and the write end of its workers' lifeline (see the module
    docstring).  ``close`` stops both: ``wait=True`` after a normal end, ``False`` on errors
    and Ctrl-C (the workers are terminated)."""

    def __init__(self, n_points):
        methods = multiprocessing.get_all_start_methods()
        if "forkserver" in methods:
            ctx = multiprocessing.get_context("forkserver")
            from multiprocessing import forkserver
            preload = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
            if "limits.sweep" not in preload:
                ctx.set_forkserver_preload(preload + ["limits.sweep"])
        else:
            ctx = multiprocessing.get_context("spawn")
        self._read, self._write = ctx.Pipe(duplex=False)
        self.pool = cf.ProcessPoolExecutor(max_workers=max(1, min(_cpu_count(), n_points)),
                                           mp_context=ctx, initializer=_watch_parent,
                                           initargs=(self._read,))

    def close(self, wait):
        try:
            if wait:
                self.pool.shutdown(wait=True)
            else:
                _terminate(self.pool)
        finally:
            self._write.close()
            self._read.close()


def _check_executor(executor):
    if executor is None or isinstance(executor, cf.Executor):
        return
    hint = ""
    if type(executor).__name__ == "Client":
        hint = " (for dask.distributed pass client.get_executor())"
    raise TypeError(f"executor must be a concurrent.futures.Executor or None, got "
                    f"{type(executor).__name__} {executor!r}{hint}")


def _workers_of(executor):
    """How many tasks the executor runs at once, None if it does not say."""
    n = getattr(executor, "_max_workers", None)
    if isinstance(n, int) and n > 0:
        return n
    client = getattr(executor, "_client", None)          # dask.distributed's ClientExecutor
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:
            return None
    return None


def _window(executor):
    """Points a coordinator keeps submitted (and leased) at once: enough to keep every worker
    busy, few enough that coordinators sharing a store share the work."""
    n = _workers_of(executor)
    return 8 * n if n else 256


def _terminate(pool):
    """Stop an owned process pool now (used on errors and Ctrl-C)."""
    pool.shutdown(wait=False, cancel_futures=True)
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            p.terminate()
        except Exception:
            pass


def _is_main_test(node):
    """``__name__ == "__main__"`` (either order)."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1
            and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = [node.left, node.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def _main_guard_hint(executor):
    """Why a process pool may break before running anything: a main script without an
    ``if __name__ == "__main__":`` block, which the workers (forkserver, spawn) import again,
    so that the script's sweep starts again inside them.  The text to add to the error, ""
    when that is not the case."""
    if executor is not None and not isinstance(executor, cf.ProcessPoolExecutor):
        return ""
    ctx = getattr(executor, "_mp_context", None)
    if ctx is not None and ctx.get_start_method() == "fork":
        return ""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError):
        return ""
    if any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body):
        return ""
    return (f": the main script {path} has no `if __name__ == \"__main__\":` block, and "
            f"worker processes import the main module again, so a sweep started at its top "
            f"level starts again in each of them and breaks the pool; put the code that calls "
            f"run_grid under `if __name__ == \"__main__\":`")
