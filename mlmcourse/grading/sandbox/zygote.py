"""Sandboxes forked from a warm "zygote", and the grader's handle on one of them.

A grading worker forks its zygote right after importing torch, NumPy and IPython and *before*
it reads any source notebook, so a sandbox (a fork of the zygote) never holds hidden tests or
reference solutions in its memory. The zygote holds the run's policy from its fork on. For each
submission the worker sends it four file descriptors (requests, replies, output, the student's
staged files) over a ``SOCK_SEQPACKET`` socket; the zygote sets its slot's cgroups up for the
sandbox (it lives in them itself, see :mod:`~mlmcourse.grading.sandbox.cgroups`), forks the
sandbox's kernel into a new PID namespace (:mod:`~mlmcourse.grading.sandbox.isolation`),
reports its pid, waits for it, reads the memory figures of the cgroup, reports how the sandbox
ended and kills whatever is left but itself.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from mlmcourse.grading.sandbox import cgroups, isolation, linux, protocol
from mlmcourse.grading.sandbox.kernel import make_shell, serve
from mlmcourse.grading.sandbox.messages import Ready, Refused
from mlmcourse.grading.sandbox.policy import Policy

if TYPE_CHECKING:
    import pyseccomp

CONTROL_BYTES = 1 << 16
"""The largest message between a worker and its zygote (a pid, an exit report)."""


def start_zygote(policy: Policy | None) -> tuple[int, socket.socket]:
    """Fork the zygote of the calling (warm, not yet secret-holding) worker; its sandboxes
    follow ``policy`` (``None``: no isolation, for ``--no-sandbox``)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            _zygote_main(theirs, policy)
        finally:
            os._exit(0)
    theirs.close()
    return pid, ours


def _zygote_main(sock: socket.socket, policy: Policy | None) -> None:
    linux.prctl(linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY)
    isolation.close_other_fds({0, 1, 2, sock.fileno(), own_pid_namespace})
    shell = make_shell()
    settle_image()
    slot = isolation.cgroup_slot(policy, os.getpid()) if policy is not None else None
    # the policy's system-call filter, built once here and loaded by each sandbox
    syscalls, filter_refusal = None, ""
    if policy is not None:
        try:
            syscalls = isolation.syscall_filter(policy.syscalls)
        except isolation.Refused as exc:
            filter_refusal = str(exc)
    joined = False  # the zygote joins its slot's cgroups once, before its first sandbox
    intact = True
    while intact:
        message, fds, _, _ = socket.recv_fds(sock, CONTROL_BYTES, 4)
        if not message:
            return
        active: cgroups.Slot | None = None
        refusal, baseline = "", 0
        if slot is not None and policy is not None:
            try:
                baseline = slot.prepare(policy.limits)
                if not joined:
                    slot.join()
                    joined = True
                active = slot
            except OSError as exc:
                refusal = f"cgroups: {exc}"
            refusal = refusal or filter_refusal
        isolated = False
        if policy is not None and not refusal:
            try:
                isolation.new_pid_namespace(policy)
                isolated = True
            except isolation.Refused as exc:
                refusal = str(exc)
        pid = os.fork()
        if pid == 0:
            _sandbox_main(shell, policy, syscalls, fds, sock.fileno(), refusal)
        if isolated:
            try:
                isolation.restore_pid_namespace(own_pid_namespace)
            except isolation.Refused:
                intact = False  # no later sandbox could have a namespace: the worker retires
        for fd in fds:
            os.close(fd)
        sock.send(protocol.encode(pid))
        _, status, usage = os.wait4(pid, 0)
        peak, kills = active.figures(baseline) if active else (0, 0)
        sock.send(protocol.encode({"status": status, "maxrss_kb": usage.ru_maxrss,
                                   "memory_peak": peak, "oom_kills": kills,
                                   "cpu_seconds": usage.ru_utime + usage.ru_stime}))
        # the worker goes on with its results meanwhile; the next request waits for this
        if active:
            active.kill_all(keep=os.getpid())
        _reap_orphans()


def settle_image() -> None:
    """Make the warm image cheap to fork, once, before the first sandbox.

    Its objects move to the collector's permanent generation (``gc.freeze``), so a sandbox's
    collections never walk them and so never copy their pages. Its anonymous memory (about
    150 MB: the interpreter's heap with torch, NumPy and IPython loaded) is collapsed into
    2 MB pages (``MADV_COLLAPSE``, Linux 6.1+): forking then copies one page-table entry per
    2 MB instead of 512, and the sandbox's exit frees as few, while a sandbox's first write to
    such a page still copies only 4 KB. Both only change speed: where the kernel declines a
    range, that range forks as before.
    """
    gc.freeze()
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        low, high = (int(bound, 16) for bound in fields[0].split("-"))
        private_anonymous = fields[1].startswith("rw") and fields[1][3] == "p" and (
            len(fields) < 6 or fields[5] == "[heap]")
        start = -(-low // linux.HUGE_PAGE) * linux.HUGE_PAGE
        end = high // linux.HUGE_PAGE * linux.HUGE_PAGE
        for _ in range(3 if private_anonymous and end > start else 0):
            try:
                linux.madvise(start, end - start, linux.MADV_COLLAPSE)
                break
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    break  # not collapsible (too sparse, or a kernel without MADV_COLLAPSE)
                # EAGAIN: a page of the range was busy for a moment; the range is tried again


def _reap_orphans(seconds: float = 2.0) -> None:
    """Collect the sandbox's processes reparented to the zygote (a subreaper) once they were
    killed, so that none is left even as a zombie when the zygote reports the end."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not os.waitpid(-1, os.WNOHANG)[0]:
                time.sleep(0.001)
    except ChildProcessError:
        pass


def _sandbox_main(shell: Any, policy: Policy | None, syscalls: pyseccomp.SyscallFilter | None,
                  fds: list[int], zygote_fd: int, refusal: str) -> None:
    """The forked kernel: isolate, then serve the grader's requests."""
    request_fd, reply_fd, output_fd, workdir_fd = fds
    try:
        os.close(zygote_fd)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        isolation.close_other_fds({0, 1, 2, request_fd, reply_fd, workdir_fd})
        # the kernel's own streams are the output pipe (IPython's display reads __stdout__)
        sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False)  # type: ignore[misc]
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)  # type: ignore[misc]
        if policy is None:
            os.setsid()
            # without isolation there is no PID namespace to end with the grader: the kernel
            # dies with its zygote (a killed grader leaves no student code running)
            linux.prctl(linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
            os.fchdir(workdir_fd)
            os.close(workdir_fd)
        else:
            isolation.enter_namespaces(policy, refusal)
            if syscalls is None:
                raise isolation.Refused("system call filter: not built")
            isolation.confine(policy, workdir_fd, syscalls)
        protocol.send(reply_fd, Ready().to_wire())
    except BaseException as exc:  # fail closed: say why, run nothing
        reason = str(exc) if isinstance(exc, isolation.Refused) else f"{type(exc).__name__}: {exc}"
        try:
            protocol.send(reply_fd, Refused(reason).to_wire())
        finally:
            os._exit(isolation.EXIT_REFUSED)
    try:
        serve(shell, request_fd, reply_fd)
    finally:
        os._exit(0)


