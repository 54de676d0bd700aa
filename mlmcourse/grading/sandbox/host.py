"""The grader's side of a sandbox: a worker's handle on its zygote (:class:`Zygote`), on one
running sandbox (:class:`Sandbox`: typed requests out, typed replies in, each decoded from bounded
plain data and checked against :mod:`~mlmcourse.grading.sandbox.messages`), and how a
sandbox ended (:class:`Exit`, :func:`describe_exit`). The zygote itself, which runs apart in its
own process, is :mod:`~mlmcourse.grading.sandbox.zygote`.
"""

from __future__ import annotations

import dataclasses
import os
import select
import signal
import socket
import time

from mlmcourse.grading.model import Failure
from mlmcourse.grading.sandbox import isolation, protocol
from mlmcourse.grading.sandbox.messages import (
    BadReply,
    Ready,
    Refused,
    Reply,
    Request,
    reply_from_wire,
)
from mlmcourse.grading.sandbox.policy import Limits, Policy
from mlmcourse.grading.sandbox.zygote import CONTROL_BYTES, start_zygote


def _ready(fds: list[int], timeout: float, events: int = select.POLLIN) -> set[int]:
    """The descriptors of ``fds`` ready within ``timeout`` seconds (poll: any fd number)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, events)
    return {fd for fd, _ in poller.poll(max(timeout, 0.0) * 1000)}


class SandboxGone(BaseException):
    """The sandbox can no longer answer: :attr:`failure` is the kind, ``str()`` the reason (a
    ``BaseException`` on purpose: test code's ``except Exception`` must not swallow it).
    ``Failure.EXITED`` means the kernel ended on its own: :func:`describe_exit` says why, once
    the zygote has reported its end."""

    def __init__(self, failure: Failure, reason: str) -> None:
        super().__init__(reason)
        self.failure = failure


@dataclasses.dataclass(frozen=True)
class Exit:
    """How a sandbox ended: the kernel's wait status, peak memory and the kernel's OOM kills."""

    status: int
    maxrss_kb: int
    memory_peak: int = 0
    oom_kills: int = 0
    cpu_seconds: float = 0.0
    zygote_lost: bool = False
    """The zygote died while the sandbox ran (the kernel's OOM killer chose it, or a kill):
    the sandbox's end was not observed, and the slot needs a new worker."""


class Zygote:
    """The worker's side of its zygote, whose sandboxes all follow one policy (given once)."""

    def __init__(self, policy: Policy | None) -> None:
        self.policy = policy
        self.limits = policy.limits if policy is not None else Limits()
        self.pid, self.sock = start_zygote(policy)

    def spawn(self, workdir: str, deadline: float) -> Sandbox:
        """Fork a sandbox working on a copy of ``workdir`` (``SandboxGone`` if it never starts:
        its reason says which isolation step was refused, or that the zygote did not answer
        before ``deadline``: then the zygote is ended too)."""
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        output_r, output_w = os.pipe()
        workdir_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        child_fds = [request_r, reply_w, output_w, workdir_fd]
        socket.send_fds(self.sock, [b"spawn"], child_fds)
        for fd in child_fds:
            os.close(fd)
        if not _ready([self.sock.fileno()], deadline - time.monotonic()):
            # a late pid would put every later exchange with this zygote out of step: it is
            # ended, and the worker (which checks ``alive``) retires with it
            self.close()
            raise SandboxGone(Failure.SANDBOX, "the zygote did not start the sandbox before "
                              "the deadline")
        pid = protocol.decode(self.sock.recv(CONTROL_BYTES))
        sandbox = Sandbox(self, pid, request_w, reply_r, output_r, self.limits)
        try:
            ready = sandbox.exchange(None, deadline)
        except SandboxGone:
            sandbox.close()  # collects the exit report, keeping the zygote socket in step
            raise
        if not isinstance(ready, Ready):
            sandbox.close()
            why = ready.reason if isinstance(ready, Refused) else f"it sent {ready}"
            raise SandboxGone(Failure.SANDBOX, f"the sandbox could not be set up ({why})")
        return sandbox

    def wait_exit(self, timeout: float = 30.0) -> Exit:
        """Read the exit report the zygote sends once the sandbox is reaped."""
        if not _ready([self.sock.fileno()], timeout):
            raise RuntimeError("the zygote did not report the sandbox's exit")
        report = self.sock.recv(CONTROL_BYTES)
        if not report:
            return Exit(status=signal.SIGKILL, maxrss_kb=0, zygote_lost=True)
        return Exit(**protocol.decode(report))

    def alive(self) -> bool:
        """Whether the zygote can still fork sandboxes."""
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def close(self) -> None:
        self.sock.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


class Sandbox:
    """A running sandbox: send requests, get plain-data replies, collect its output."""

    def __init__(self, zygote: Zygote, pid: int, request_fd: int, reply_fd: int, output_fd: int,
                 limits: Limits) -> None:
        self.zygote, self.pid, self.limits = zygote, pid, limits
        self.request_fd, self.reply_fd, self.output_fd = request_fd, reply_fd, output_fd
        self.output_total = 0
        self.output = bytearray()  # output since the last take_output()
        self.exit: Exit | None = None
        os.set_blocking(request_fd, False)

    def take_output(self) -> str:
        """The output written since the last call (decoded leniently)."""
        text = self.output.decode("utf-8", "replace")
        self.output.clear()
        return text

    def exchange(self, request: Request | None, deadline: float) -> Reply:
        """Send ``request`` (``None``: only wait for the sandbox's first reply, :class:`Ready`
        or :class:`Refused`) and return the reply, draining output meanwhile.

        Decoding counts against ``deadline`` too. Raises ``SandboxGone`` (the sandbox exited,
        timed out, wrote too much, or sent something that is not a bounded reply of the
        messages' table).
        """
        wire = b"" if request is None else protocol.frame(protocol.encode(request.to_wire()))
        pending = memoryview(wire)
        reader = protocol.FrameReader(self.limits.reply_bytes)
        output_open = True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise SandboxGone(Failure.TIMEOUT, "timeout")
            readers = [self.reply_fd] + ([self.output_fd] if output_open else [])
            poller = select.poll()
            for fd in readers:
                poller.register(fd, select.POLLIN)
            if pending:
                poller.register(self.request_fd, select.POLLOUT)
            events = dict(poller.poll(remaining * 1000))
            readable = {fd for fd in readers if fd in events}
            if pending and self.request_fd in events:
                try:
                    pending = pending[os.write(self.request_fd, pending):]
                except BrokenPipeError:
                    pending = memoryview(b"")
            if self.output_fd in readable:
                output_open = self._drain_output()
            if self.reply_fd in readable:
                chunk = os.read(self.reply_fd, min(reader.needed(), 1 << 20))
                if not chunk:
                    self._drain_output()
                    raise SandboxGone(Failure.EXITED, "exited")
                try:
                    payload = reader.feed(chunk)
                    if payload is None:
                        continue
                    self._drain_output()
                    return reply_from_wire(protocol.decode(
                        payload, max_items=self.limits.reply_items, deadline=deadline))
                except TimeoutError:
                    self.kill()
                    raise SandboxGone(Failure.TIMEOUT, "timeout") from None
                except (protocol.ProtocolError, BadReply) as exc:
                    self.kill()
                    raise SandboxGone(Failure.REPLY, "the sandbox sent a reply the grader "
                                      f"refuses ({exc})") from None

    def _drain_output(self) -> bool:
        """Read what output is available; False at end of file. Enforces the output limit."""
        while _ready([self.output_fd], 0):
            chunk = os.read(self.output_fd, 1 << 16)
            if not chunk:
                return False
            self.output_total += len(chunk)
            room = max(0, self.limits.output_kept_bytes - len(self.output))
            self.output += chunk[:room]
            if self.output_total > self.limits.output_bytes:
                self.kill()
                raise SandboxGone(Failure.OUTPUT, "output limit")
        return True

    def kill(self) -> None:
        """Kill the kernel (PID 1 of its namespace: every process of the sandbox follows)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self, grace: float = 0.0) -> Exit:
        """Close the pipes and return how the sandbox ended, killing it after ``grace`` seconds
        (a sandbox that is ending on its own is given that long to report its own status).
        Closing again only returns the same end: nothing is killed or closed twice."""
        if self.exit is None and grace > 0:
            try:
                self.exit = self.zygote.wait_exit(timeout=grace)
            except RuntimeError:
                pass
        if self.exit is None:  # once reported, the kernel is reaped and its pid may be reused
            self.kill()
        for fd in (self.request_fd, self.reply_fd, self.output_fd):
            if fd >= 0:
                os.close(fd)
        self.request_fd = self.reply_fd = self.output_fd = -1
        if self.exit is None:
            self.exit = self.zygote.wait_exit()
        return self.exit


def describe_exit(exit: Exit, limits: Limits) -> tuple[Failure, str]:
    """Why a sandbox ended: its kind of failure (memory, CPU time, file size, the sandbox's set-up
    or slot, or an exit of its own) and a human reason naming the limit."""
    if exit.zygote_lost:
        return Failure.SANDBOX, ("the sandbox's job slot was killed, most likely by its memory "
                                 f"limit ({limits.memory_bytes / 1024**3:g} GB)")
    if exit.oom_kills:
        return Failure.MEMORY, f"memory limit {limits.memory_bytes / 1024**3:g} GB exceeded"
    cpu = f"CPU time limit {limits.cpu_seconds} s exceeded"
    if exit.cpu_seconds >= limits.cpu_seconds:  # PID 1 ignores SIGXCPU: SIGKILL at the hard limit
        return Failure.CPU_TIME, cpu
    status = exit.status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return Failure.CPU_TIME, cpu
        if sig == signal.SIGXFSZ:
            return Failure.FILE_SIZE, f"file size limit {limits.file_bytes // 1024**2} MB exceeded"
        try:
            return Failure.EXITED, f"the kernel was killed ({signal.Signals(sig).name})"
        except ValueError:
            return Failure.EXITED, f"the kernel was killed (signal {sig})"
    code = os.WEXITSTATUS(status)
    if code == isolation.EXIT_REFUSED:
        return Failure.SANDBOX, "the sandbox could not be set up"
    return Failure.EXITED, f"the kernel exited with code {code}"
