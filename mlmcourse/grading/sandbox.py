"""Sandbox children forked from a warm "zygote", and the grader's handle on one of them.

A grading worker forks its zygote right after importing torch, NumPy and IPython and *before* it
reads any source notebook, so a sandbox child (a fork of the zygote) never holds hidden tests or
reference solutions in its memory. For each submission the worker sends the zygote a policy and
four file descriptors (requests, replies, output, working directory) over a ``SOCK_SEQPACKET``
socket; the zygote forks the child, reports its pid, waits for it, kills whatever it left
behind (a reaper with the child's uid calls ``kill(-1, SIGKILL)``) and reports the exit status.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

from mlmcourse.grading import protocol
from mlmcourse.grading.isolation import Limits, Policy, isolate

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
MB = 1024 * 1024


class SandboxGone(BaseException):
    """The sandbox can no longer answer; ``str()`` is the reason (a ``BaseException`` on purpose:
    test code's ``except Exception`` must not swallow it)."""


def _keep_only_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def start_zygote() -> tuple[int, socket.socket]:
    """Fork the zygote of the calling (warm, not yet secret-holding) worker."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            _zygote_main(theirs)
        finally:
            os._exit(0)
    theirs.close()
    return pid, ours


def _zygote_main(sock: socket.socket) -> None:
    from mlmcourse.grading.kernel import make_shell

    libc = _libc()
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    _keep_only_fds({0, 1, 2, sock.fileno()})
    shell = make_shell()
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 4)
        if not message:
            return
        request = protocol.decode(message)
        limits = Limits(**request["limits"])
        policy = Policy(**{**request["policy"], "limits": limits,
                           "hidden_paths": tuple(request["policy"]["hidden_paths"]),
                           "revealed_paths": tuple(request["policy"]["revealed_paths"])})
        pid = os.fork()
        if pid == 0:
            _child_main(shell, policy, fds, sock.fileno())
        for fd in fds:
            os.close(fd)
        sock.send(protocol.encode(pid))
        _, status, usage = os.wait4(pid, 0)
        _reap(policy)
        sock.send(protocol.encode({"status": status, "maxrss_kb": usage.ru_maxrss}))


def _reap(policy: Policy, seconds: float = 5.0) -> None:
    """Kill and reap everything the child left behind (escaped grandchildren, fork bombs).

    The zygote is a child subreaper, so every live descendant of the child is a child of the
    zygote: when it has none, nothing is left. Otherwise a reaper with the child's uid sends
    ``kill(-1, SIGKILL)``, again until no child is left.
    """
    can_kill = policy.enabled and os.geteuid() == 0
    deadline = time.monotonic() + seconds
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        if not can_kill or time.monotonic() > deadline:
            return
        reaper = os.fork()
        if reaper == 0:
            try:
                os.setgid(policy.uid)
                os.setuid(policy.uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(reaper, 0)
        time.sleep(0.01)


def _child_main(shell: Any, policy: Policy, fds: list[int], zygote_fd: int) -> None:
    from mlmcourse.grading.kernel import serve

    try:
        request_fd, reply_fd, output_fd, workdir_fd = fds
        os.close(zygote_fd)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        _keep_only_fds({0, 1, 2, request_fd, reply_fd, workdir_fd})
        sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        _, warnings = isolate(policy, workdir_fd)
        os.close(workdir_fd)
        protocol.send(reply_fd, ["ready", warnings])
        serve(shell, request_fd, reply_fd)
    finally:
        os._exit(0)


@dataclasses.dataclass
class Exit:
    """How a sandbox child ended: its wait status and peak memory."""

    status: int
    maxrss_kb: int


class Zygote:
    """The worker's side of its zygote."""

    def __init__(self) -> None:
        self.pid, self.sock = start_zygote()

    def spawn(self, policy: Policy, workdir: str, deadline: float) -> Sandbox:
        """Fork a sandbox child working on ``workdir`` (``SandboxGone`` if it never starts)."""
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        output_r, output_w = os.pipe()
        workdir_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        plain = dataclasses.asdict(policy)
        limits = plain.pop("limits")
        plain["hidden_paths"] = list(plain["hidden_paths"])
        plain["revealed_paths"] = list(plain["revealed_paths"])
        message = protocol.encode({"policy": plain, "limits": limits})
        child_fds = [request_r, reply_w, output_w, workdir_fd]
        socket.send_fds(self.sock, [message], child_fds)
        for fd in child_fds:
            os.close(fd)
        pid = protocol.decode(self.sock.recv(1 << 16))
        sandbox = Sandbox(self, pid, request_w, reply_r, output_r, policy.limits.output_bytes)
        try:
            ready = sandbox.exchange(None, deadline)
        except SandboxGone:
            sandbox.close()  # collects the exit report, keeping the zygote socket in step
            raise
        sandbox.warnings = [str(w) for w in ready[1]] if isinstance(ready, list) else []
        return sandbox

    def wait_exit(self, timeout: float = 30.0) -> Exit:
        """Read the exit report the zygote sends once the child is reaped."""
        if not select.select([self.sock], [], [], timeout)[0]:
            raise RuntimeError("the zygote did not report the sandbox's exit")
        report = protocol.decode(self.sock.recv(1 << 16))
        return Exit(report["status"], report["maxrss_kb"])

    def close(self) -> None:
        self.sock.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


class Sandbox:
    """A running sandbox child: send requests, get plain-data replies, collect its output."""

    def __init__(self, zygote: Zygote, pid: int, request_fd: int, reply_fd: int, output_fd: int,
                 output_limit: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.request_fd, self.reply_fd, self.output_fd = request_fd, reply_fd, output_fd
        self.output_limit = output_limit
        self.output_total = 0
        self.output = bytearray()  # output since the last take_output()
        self.warnings: list[str] = []
        self.exit: Exit | None = None
        os.set_blocking(request_fd, False)

    def take_output(self) -> str:
        """The output written since the last call (decoded leniently)."""
        text = self.output.decode("utf-8", "replace")
        self.output.clear()
        return text

    def exchange(self, request: Any, deadline: float) -> Any:
        """Send ``request`` (unless None) and return the decoded reply, draining output meanwhile.

        Raises ``SandboxGone`` (child exited, timed out, wrote too much, or sent garbage).
        """
        pending = memoryview(b"" if request is None else
                             struct.pack(">I", len(data := protocol.encode(request))) + data)
        reply = bytearray()
        output_open = True
        while True:
            frame = _complete_frame(reply)
            if frame is not None:
                self._drain_output()
                try:
                    return protocol.decode(frame)
                except protocol.ProtocolError as exc:
                    self.kill()
                    raise SandboxGone(f"the sandbox sent a malformed reply ({exc})") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise SandboxGone("timeout")
            readers = [self.reply_fd] + ([self.output_fd] if output_open else [])
            readable, writable, _ = select.select(readers, [self.request_fd] if pending else [],
                                                  [], remaining)
            if writable:
                try:
                    pending = pending[os.write(self.request_fd, pending):]
                except BrokenPipeError:
                    pending = memoryview(b"")
            if self.output_fd in readable:
                output_open = self._drain_output()
            if self.reply_fd in readable:
                chunk = os.read(self.reply_fd, 1 << 20)
                if not chunk:
                    self._drain_output()
                    raise SandboxGone("exited")
                reply += chunk
                if len(reply) > protocol.MAX_MESSAGE_BYTES + 4:
                    self.kill()
                    raise SandboxGone("the sandbox sent a reply larger than the limit")

    def _drain_output(self) -> bool:
        """Read what output is available; False at end of file. Enforces the output limit."""
        while select.select([self.output_fd], [], [], 0)[0]:
            chunk = os.read(self.output_fd, 1 << 16)
            if not chunk:
                return False
            self.output_total += len(chunk)
            room = max(0, 64 * 1024 - len(self.output))
            self.output += chunk[:room]
            if self.output_total > self.output_limit:
                self.kill()
                raise SandboxGone("output limit")
        return True

    def kill(self) -> None:
        """Kill the child's whole process group (the zygote then reaps and reports)."""
        for target in (-self.pid, self.pid):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> Exit:
        """Kill the child, close the pipes and return how it ended."""
        self.kill()
        for fd in (self.request_fd, self.reply_fd, self.output_fd):
            try:
                os.close(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
        if self.exit is None:
            self.exit = self.zygote.wait_exit()
        return self.exit

    def ended(self) -> Exit:
        """Wait (briefly) for a child that is ending on its own, then report how it ended."""
        if self.exit is None:
            try:
                self.exit = self.zygote.wait_exit(timeout=5.0)
            except RuntimeError:
                self.kill()
                self.exit = self.zygote.wait_exit()
        return self.exit


def _complete_frame(buffer: bytearray) -> bytes | None:
    if len(buffer) < 4:
        return None
    (length,) = struct.unpack(">I", buffer[:4])
    if length > protocol.MAX_MESSAGE_BYTES:
        raise SandboxGone("the sandbox announced a reply larger than the limit")
    if len(buffer) < 4 + length:
        return None
    frame = bytes(buffer[4 : 4 + length])
    del buffer[: 4 + length]
    return frame


def describe_exit(exit: Exit, limits: Limits) -> str:
    """A human reason for a child's end (limits named)."""
    if os.WIFSIGNALED(exit.status):
        sig = os.WTERMSIG(exit.status)
        if sig == signal.SIGXCPU:
            return f"CPU time limit {limits.cpu_seconds} s exceeded"
        if sig == signal.SIGXFSZ:
            return f"file size limit {limits.file_bytes // MB} MB exceeded"
        if sig == signal.SIGKILL:
            return "the kernel was killed (SIGKILL)"
        return f"the kernel crashed ({signal.Signals(sig).name})"
    return f"the kernel exited with code {os.WEXITSTATUS(exit.status)}"
