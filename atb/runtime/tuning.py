"""Performance patches with process-wide reach, all in one place.

Each function below changes something every thread (or every user of a library) in the
process sees, so none of them happens as a side effect of an import: the code that wants
the speed calls the function, explicitly, and each is idempotent.
`tests/benchmarks/bench_tuning.py` measures each against the unpatched behaviour in the
same run (`nox -s bench -- -k tuning`). Figures from that bench on the 2-core development
machine at load average 8-10 (other work running: take them as orders of magnitude;
repeated runs varied by up to 2x):

- `fast_sqlite_binding` (Database.start on SQLite: the journal's and the recorder's bulk
  inserts): executemany of 200,000 rows holding 4 None/bool values, 2.8 s -> 1.3 s (1.1-2.1x).
- `skip_hydra_mode_probe` (`python -m atb` at start): one config composition less,
  `--cfg job` 1.74 s -> 1.43 s wall (1.2x).
- `cover_sweep_validation` (the sweep callback): a 24-job grid is validated by composing
  its 6 covering jobs, 22.7 s -> 4.9 s before the first job starts (4.6x).
- `fork_joblib_workers` (the sweep callback, joblib launcher): 2 workers ready with atb's
  modules imported, 10.5 s fresh (loky) -> 0.37 s forked from the warmed launcher (29x)
  (measured with joblib's multiprocessing backend; the fork pool now used also skips
  its resource-tracker interpreter).
- `shorter_switch_interval` (the health server's own process, where check workers share
  the GIL with the HTTP loop): p90 of a request's 4 GIL hand-backs while a thread spins,
  33 ms at Python's 5 ms -> 11 ms at 0.5 ms (2.9x).

Not performance, and so not here: the Hydra patches that keep secrets out of printed and
saved configs (`atb.runtime.printed`, `atb.runtime.sweep.install_redacted_multirun_save`).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NoReturn, cast


def fast_sqlite_binding() -> None:
    """Let the sqlite3 module bind None and bool without its adaptation slow path.

    sqlite3 binds int/float/str directly; any other value goes through the adaptation
    protocol first, and a value with no registered adapter fails two attribute lookups
    (`PrepareProtocol.__adapt__`, `value.__conform__`), each raising and clearing an
    AttributeError, with the GIL held. A journal row has 4-6 of them (nullable columns,
    alert_sent), which made binding most of the journal inserter's GIL time. These adapters
    return what sqlite3 would bind anyway (None -> NULL, bool -> its int), so the stored
    values are unchanged for every sqlite3 user in the process; an adapter someone else
    registered for these types is left alone.
    """
    registered = getattr(sqlite3, "adapters", {})
    protocol = sqlite3.PrepareProtocol
    if (type(None), protocol) not in registered:
        nothing: dict[None, None] = {}
        sqlite3.register_adapter(type(None), nothing.get)  # a C callable returning None
    if (bool, protocol) not in registered:
        sqlite3.register_adapter(bool, int)


def skip_hydra_mode_probe(args: Sequence[str]) -> None:
    """Spare Hydra's second composition of the whole config on every start.

    Hydra 1.3 composes the config once just to read `hydra.mode` (is this a sweep?) and
    again for the run. atb's own configs never set hydra.mode, so unless the command line
    touches it (or adds an experiment, which may), `-m` decides.
    """
    from hydra._internal.hydra import Hydra

    if any(a.lstrip("+~").startswith(("hydra.mode", "experiment")) for a in args):
        return
    if getattr(Hydra.get_mode, "_atb_fast", False):
        return

    def get_mode(self: Hydra, config_name: str | None, overrides: list[str]) -> Any:
        return None

    get_mode._atb_fast = True  # type: ignore[attr-defined]
    Hydra.get_mode = get_mode  # type: ignore[method-assign]


def _composition_key(override: str) -> str:
    """What of an override can change a composition: a config-group choice
    (`strategy=ml_basic`, `hydra/launcher=ray`, `db@x=pg`) by its value, a value
    (`strategy.fast=5`) by its key only. Every value of a key composes alike: Hydra only
    checks that the key exists; the value is checked by atb's config validation in the job,
    as it always was."""
    key, sep, _value = override.partition("=")
    bare = key.lstrip("+~")
    if sep and "." in bare and "/" not in bare and "@" not in bare:
        return bare
    return override


def covering_jobs(batch: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """Greedily, the job adding the most unseen composition keys, until every one has
    been seen: each config-group choice and each overridden key composed at least once."""
    keyed = [{_composition_key(item) for item in job} for job in batch]
    unseen = set().union(*keyed) if keyed else set()
    chosen: list[Sequence[str]] = []
    while unseen:
        k = max(range(len(batch)), key=lambda i: len(unseen & keyed[i]))
        chosen.append(batch[k])
        unseen -= keyed[k]
    return chosen


def cover_sweep_validation() -> None:
    """Hydra's basic sweeper validates only the `covering_jobs` of each batch.

    The sweeper composes every job's config in the launching process before launching any,
    to fail early on a typo: serial work the size of the grid, ~0.4 s a composition, before
    any job starts. Composing each config-group choice and each overridden key once keeps
    the check (an unknown key or group option still fails before any job runs): a grid of
    values (`strategy.fast=5,10 strategy.slow=40,60`) is one composition, a grid of group
    choices max(axis length).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if getattr(BasicSweeper.validate_batch_is_legal, "atb_covering", False):
        return
    validate_all = BasicSweeper.validate_batch_is_legal

    def validate(self: Any, batch: Sequence[Sequence[str]]) -> None:
        validate_all(self, covering_jobs(batch))

    validate.atb_covering = True  # type: ignore[attr-defined]
    BasicSweeper.validate_batch_is_legal = validate  # type: ignore[method-assign]


def fork_available() -> bool:
    # fork is safe and the multiprocessing default on Linux only; macOS/Windows spawn.
    import multiprocessing

    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def fork_joblib_workers() -> None:
    """hydra-joblib-launcher's jobs run in workers forked from the (warmed) launching process.

    The plugin hard-codes joblib's loky backend: fresh interpreters that each import pandas,
    SQLAlchemy, the engine, ... before their first job. With more than one worker the jobs
    go instead to a fork process pool started when the jobs are known: each worker inherits
    the launcher's imports (`atb.runtime.sweep.warm_imports`) and the job list itself, so a
    task crosses the pipe as its index and only the job's result is pickled back. joblib's
    own multiprocessing backend would add a memmapping pool whose resource tracker is one
    more fresh interpreter (~0.3 s of a core while the workers start) and a cloudpickle of
    Hydra's state per task. Jobs are handed out in order, one at a time, to whichever
    worker is free, as joblib does; `pre_dispatch`, `batch_size` and `timeout` do not apply.
    One worker (or one job) keeps joblib's in-process path.
    """
    from hydra_plugins.hydra_joblib_launcher import _core

    if getattr(_core.Parallel, "atb_fork", False):
        return
    loky_parallel = _core.Parallel

    class ForkParallel(loky_parallel):  # type: ignore[misc, valid-type]
        atb_fork = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("backend") == "loky":
                kwargs["backend"] = "multiprocessing"
            super().__init__(*args, **kwargs)

        def __call__(self, iterable: Any) -> Any:
            from joblib import effective_n_jobs

            calls = list(iterable)
            workers = min(effective_n_jobs(self.n_jobs), len(calls))
            if workers <= 1:
                cloudpickle = _cloudpickle()
                pickled: Any = (
                    (_call_pickled, (cloudpickle.dumps((func, args, kwargs)),), {})
                    for func, args, kwargs in calls
                )
                return [cloudpickle.loads(r) for r in super().__call__(pickled)]
            return _run_forked(calls, workers)

    _core.Parallel = ForkParallel


class _ForkedJobs:
    """What the workers of the fork pool being started inherit (see _run_forked)."""

    calls: ClassVar[list[tuple[Any, tuple[Any, ...], dict[str, Any]]]] = []
    interrupted: ClassVar[Any] = None  # a multiprocessing Event: set, no further job starts


def _run_forked(calls: list[Any], workers: int) -> list[Any]:
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    cloudpickle = _cloudpickle()
    context = multiprocessing.get_context("fork")
    _ForkedJobs.calls = calls
    _ForkedJobs.interrupted = context.Event()
    # The workers share the launcher's heap copy-on-write. Frozen at the fork, it is never
    # scanned by their collections, which would otherwise touch (and so copy) every page
    # holding a tracked object (Python's advice for fork without exec). Not when the
    # process froze objects itself: unfreeze() would release them.
    freeze = gc.get_freeze_count() == 0
    # An executor rather than multiprocessing.Pool: a worker killed mid-job (OOM, kill -9)
    # breaks it, and the sweep ends with one line and exit 1 instead of waiting forever.
    # (SystemExit: Hydra would print an ordinary exception with its traceback.)
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_ctrl_c)
    try:
        with executor:
            if freeze:
                gc.collect()
                gc.freeze()
            try:
                # With fork, every worker is started at the first submit, i.e. in here.
                results = executor.map(_call_forked, range(len(calls)))
            finally:
                if freeze:
                    gc.unfreeze()
            try:
                return [cloudpickle.loads(r) for r in results]
            except BrokenProcessPool:
                # The executor asked the other workers to stop (SIGTERM, which a running
                # job takes as "finish this step"), but an idle worker then waits on its
                # queue for good. The pool is lost: end them, or the launcher waits too.
                _kill_workers(executor)
                _stop_sweep(
                    "atb: error: a sweep worker died mid-job (killed, or out of memory?);"
                    " the sweep stopped. The jobs reported done above are recorded.",
                    1,
                )
            except KeyboardInterrupt:
                # Ctrl-C reached the whole process group: each running job stops at its next
                # step and records itself; no queued job starts. Ctrl-C again: stop now.
                _ForkedJobs.interrupted.set()
                print(
                    "atb: interrupted: running jobs stop at their next step (Ctrl-C again"
                    " to kill them)",
                    file=sys.stderr,
                    flush=True,
                )
                try:
                    executor.shutdown(wait=True, cancel_futures=True)
                except KeyboardInterrupt:
                    _kill_workers(executor)
                _stop_sweep("atb: interrupted", 130)
    finally:
        _ForkedJobs.calls = []


def _stop_sweep(line: str, code: int) -> NoReturn:
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(code)


def _ignore_ctrl_c() -> None:
    """Pool workers between jobs leave Ctrl-C to the launcher; a running job's runner sets
    its own handler (stop at the next step) and puts this one back when it ends."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _kill_workers(executor: Any) -> None:
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.kill()


def _call_forked(index: int) -> bytes:
    if _ForkedJobs.interrupted.is_set():
        raise RuntimeError(f"sweep job {index} not started: the sweep was interrupted")
    func, args, kwargs = _ForkedJobs.calls[index]
    try:
        result = func(*args, **kwargs)
    except SystemExit as exc:
        # Re-raised in the launcher, a job's SystemExit would end it mid-sweep with that
        # code and no word of which job; as an error it names the job.
        raise RuntimeError(f"sweep job {index} exited (code {exc.code})") from None
    return cast(bytes, _cloudpickle().dumps(result))


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:  # joblib < 1.6 vendors it
        from joblib.externals import cloudpickle
    return cloudpickle


def _call_pickled(payload: bytes) -> bytes:
    cloudpickle = _cloudpickle()
    func, args, kwargs = cloudpickle.loads(payload)
    return cast(bytes, cloudpickle.dumps(func(*args, **kwargs)))


def shorter_switch_interval(seconds: float | None) -> Callable[[], None]:
    """Lower the interpreter's GIL switch interval; returns the call that restores it.

    A CPU-bound thread holds the GIL; after every socket call the health server's HTTP
    thread waits up to the switch interval to get it back (5 ms by default, several times
    per request). A shorter interval only costs anything while threads contend, and bounds
    the probe latency a busy check worker can impose. `None`, or a value not below the current one,
    changes nothing.
    """
    if seconds is None or seconds >= sys.getswitchinterval():
        return lambda: None
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    return lambda: sys.setswitchinterval(previous)
