"""``httpsys serve --workers N`` and ``httpsys demo --workers N``: N server processes.

DESIGN.md (Threads, Processes): each worker is a copy of the single-process command, forked
from a parent that has started no threads and holds no store connection: its own Server, I/O
threads, StoreWatcher and control socket (so ``httpsys http show servicestate`` lists one server
session per worker). The listening sockets are ``SO_REUSEPORT`` (csrc/server.c), so the workers
bind the same ports and the kernel spreads the connections among them.

The parent only supervises:

- SIGTERM or SIGINT (Ctrl-C) is forwarded to the workers as SIGTERM; the parent waits for them and
  exits 0. A second signal, or workers still running ``STOP_TIMEOUT`` seconds later, gets them a
  SIGKILL.
- A worker that exits while the parent is not stopping is logged and forked again after a
  backoff (0.1 s, doubling, at most 5 s). Deaths within ``QUICK`` seconds of a start count as
  quick; ``MAX_QUICK`` quick deaths in a row (a worker that lived longer resets the count) mean the
  workers cannot run: the parent stops the others and exits 1.
- Workers ask the kernel for a SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), so a killed
  parent leaves none behind.

The parent waits for its signals with ``sigtimedwait`` (SIGCHLD, SIGTERM and SIGINT blocked), so
no signal is lost between a check and a wait; the workers get the parent's original mask back.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("httpsys")

QUICK = 2.0  #: seconds: a worker that exits sooner after its start "died at once"
MAX_QUICK = 5  #: quick deaths in a row before the parent gives up
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
STOP_TIMEOUT = 30.0  #: seconds the workers get to stop before SIGKILL

_PR_SET_PDEATHSIG = 1
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True)
class WorkerInfo:
    """What a forked worker knows about itself."""

    index: int  # 0 .. N-1, kept across restarts
    count: int  # N
    first_start: bool  # False after a restart


_worker: WorkerInfo | None = None


def current() -> WorkerInfo | None:
    """This process's worker info, or None in a parent or a single-process server."""
    return _worker


def announces() -> bool:
    """Whether this process prints the one-time banner: a single-process server, or the first
    start of worker 0."""
    return _worker is None or (_worker.index == 0 and _worker.first_start)


@dataclass
class _Slot:
    index: int
    started: float


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


_stop_requested = False


def _stop_on_first_signal(signum: int, frame: object) -> None:
    # In a worker: the first SIGTERM/SIGINT stops it (as in a single-process server); later ones
    # (Ctrl-C reaches the whole process group, then the parent forwards SIGTERM) do nothing, so
    # that they cannot interrupt the shutdown. The handler stays installed: switching to SIG_IGN
    # here makes Python report a signal that was already on its way ("ignored due to race
    # condition").
    global _stop_requested
    if _stop_requested:
        return
    _stop_requested = True
    raise KeyboardInterrupt


def _in_child(info: WorkerInfo, parent: int, mask: Iterable[int],
              run: Callable[[], int]) -> None:
    """The forked worker: never returns."""
    global _worker
    code = 1
    try:
        _worker = info
        signal.signal(signal.SIGTERM, _stop_on_first_signal)
        signal.signal(signal.SIGINT, _stop_on_first_signal)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before the prctl
            os._exit(0)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = run()
    except KeyboardInterrupt:
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001  (a worker reports anything, then exits 1)
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def supervise(count: int, run: Callable[[], int], *, name: str = "httpsys") -> int:
    """Forks ``count`` workers that each call ``run()`` (their exit code) and supervises them as
    the module says. Returns the parent's exit code: 0 when stopped by a signal, 1 when the
    workers kept dying at once. Call it from the main thread of a process with no other
    threads."""
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    slots: dict[int, _Slot] = {}
    restarts: list[tuple[float, int]] = []  # (when, index)

    def spawn(index: int, first: bool) -> None:
        pid = os.fork()
        if pid == 0:
            _in_child(WorkerInfo(index, count, first), parent, mask, run)
        slots[pid] = _Slot(index, time.monotonic())
        log.info("%s: worker %d/%d started (pid %d)", name, index + 1, count, pid)

    def signal_all(signum: int) -> None:
        for pid in slots:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    code = 0
    stopping = False
    stop_deadline = 0.0
    quick_deaths = 0
    try:
        for i in range(count):
            spawn(i, True)
        while slots or (restarts and not stopping):
            now = time.monotonic()
            if not stopping:
                for when, index in sorted(restarts):
                    if when <= now:
                        restarts.remove((when, index))
                        spawn(index, False)
            deadlines = [when for when, _ in restarts] if not stopping else [stop_deadline]
            if deadlines:
                info = signal.sigtimedwait(_SIGNALS, max(0.0, min(deadlines) - time.monotonic()))
            else:
                info = signal.sigwaitinfo(_SIGNALS)
            if info is None:  # a timeout: a restart is due, or the stop took too long
                if stopping and slots and time.monotonic() >= stop_deadline:
                    log.error("%s: workers %s still running %.0fs after SIGTERM: killing them",
                              name, sorted(slots), STOP_TIMEOUT)
                    signal_all(signal.SIGKILL)
                    stop_deadline = time.monotonic() + 3600
                continue
            if info.si_signo in (signal.SIGTERM, signal.SIGINT):
                if stopping:
                    log.warning("%s: second stop signal: killing the workers", name)
                    signal_all(signal.SIGKILL)
                else:
                    stopping = True
                    restarts.clear()
                    log.info("%s: stopping %d workers", name, len(slots))
                    signal_all(signal.SIGTERM)
                    stop_deadline = time.monotonic() + STOP_TIMEOUT
                continue
            # SIGCHLD: reap every worker that exited (several may share one signal).
            while slots:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                slot = slots.pop(pid, None)
                if slot is None:
                    continue
                if stopping:
                    if os.waitstatus_to_exitcode(status) != 0:
                        log.warning("%s: worker %d (pid %d) %s while stopping", name,
                                    slot.index + 1, pid, _describe(status))
                    continue
                lived = time.monotonic() - slot.started
                quick_deaths = quick_deaths + 1 if lived < QUICK else 0
                if quick_deaths >= MAX_QUICK:
                    log.error("%s: worker %d (pid %d) %s after %.1fs; %d workers died at once "
                              "in a row: giving up", name, slot.index + 1, pid,
                              _describe(status), lived, quick_deaths)
                    print(f"{name}: error: the worker processes keep dying at start "
                          f"({quick_deaths} in a row within {QUICK:.0f}s); giving up",
                          file=sys.stderr, flush=True)
                    code = 1
                    stopping = True
                    restarts.clear()
                    signal_all(signal.SIGTERM)
                    stop_deadline = time.monotonic() + STOP_TIMEOUT
                    continue
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, quick_deaths - 1)) \
                    if quick_deaths else BACKOFF_FIRST
                log.warning("%s: worker %d (pid %d) %s after %.1fs; restarting it in %.1fs",
                            name, slot.index + 1, pid, _describe(status), lived, delay)
                restarts.append((time.monotonic() + delay, slot.index))
    except BaseException:
        signal_all(signal.SIGKILL)
        for pid in list(slots):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return code
