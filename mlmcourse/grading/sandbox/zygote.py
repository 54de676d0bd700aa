"""Sandboxes forked from a warm "zygote", and the grader's handle on one of them.

A grading worker forks its zygote right after importing torch, NumPy and IPython and *before*
it reads any source notebook, so a sandbox (a fork of the zygote) never holds hidden tests or
reference solutions in its memory. For each submission the worker sends the zygote a policy (its
system-call table only with the first: the zygote builds the filter once) and four file
descriptors (requests, replies, output, the student's staged files) over a ``SOCK_SEQPACKET``
socket; the zygote sets its slot's cgroups up for the sandbox (it lives in them itself, see
:mod:`~mlmcourse.grading.sandbox.cgroups`), forks the sandbox's kernel into a new PID namespace
(:mod:`~mlmcourse.grading.sandbox.isolation`), reports its pid, waits for it, reads the memory
figures of the cgroup, reports how the sandbox ended and kills whatever is left but itself.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import select
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from mlmcourse.grading.sandbox import cgroups, isolation, linux, protocol
from mlmcourse.grading.sandbox.kernel import make_shell, serve
from mlmcourse.grading.sandbox.policy import Limits, Policy, RefusedCalls

if TYPE_CHECKING:
    import pyseccomp

CONTROL_BYTES = 1 << 16
OUTPUT_KEPT = 64 * 1024
"""Output bytes kept per cell for the autograded notebook (the rest is counted, not kept)."""


def _ready(fds: list[int], timeout: float, events: int = select.POLLIN) -> set[int]:
    """The descriptors of ``fds`` ready within ``timeout`` seconds (poll: any fd number)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, events)
    return {fd for fd, _ in poller.poll(max(timeout, 0.0) * 1000)}


class SandboxGone(BaseException):
    """The sandbox can no longer answer; ``str()`` is the reason (a ``BaseException`` on purpose:
    test code's ``except Exception`` must not swallow it)."""


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


def policy_to_plain(policy: Policy | None) -> dict | None:
    return None if policy is None else dataclasses.asdict(policy)


def policy_from_plain(plain: dict | None) -> Policy | None:
    if plain is None:
        return None
    return Policy(uid=plain["uid"], readonly_paths=tuple(plain["readonly_paths"]),
                  cgroups=tuple(plain["cgroups"]), limits=Limits(**plain["limits"]),
                  syscalls=syscalls_from_plain(plain["syscalls"]))


def syscalls_from_plain(plain: list[dict]) -> tuple[RefusedCalls, ...]:
    return tuple(RefusedCalls(**{**rule, "syscalls": tuple(rule["syscalls"]),
                                 "unless_one_of": tuple(rule["unless_one_of"])})
                 for rule in plain)


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
    linux.prctl(linux.PR_SET_PDEATHSIG, int(signal.SIGKILL))
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY)
    isolation.close_other_fds({0, 1, 2, sock.fileno(), own_pid_namespace})
    shell = make_shell()
    settle_image()
    joined: tuple[str, ...] = ()
    # the policy's system-call table, sent with the first sandbox (and again only if it
    # changes), and its filter, built here once and loaded by each sandbox
    syscalls: tuple[RefusedCalls, ...] = ()
    built: pyseccomp.SyscallFilter | None = None
    filter_refusal = "system call filter: no table was sent"
    intact = True
    while intact:
        message, fds, _, _ = socket.recv_fds(sock, CONTROL_BYTES, 4)
        if not message:
            return
        request = protocol.decode(message)
        if "syscalls" in request:
            syscalls, built, filter_refusal = syscalls_from_plain(request["syscalls"]), None, ""
            try:
                built = isolation.syscall_filter(syscalls)
            except isolation.Refused as exc:
                filter_refusal = str(exc)
        policy = policy_from_plain(request["policy"])
        folders, refusal, kills_before = (), "", 0
        if policy is not None:
            policy = dataclasses.replace(policy, syscalls=syscalls)
            try:
                folders = isolation.cgroup_folders(policy, os.getpid())
                kills_before = cgroups.prepare(folders, policy.limits)
                if folders != joined:
                    cgroups.join(folders)
                    joined = folders
            except OSError as exc:
                folders, refusal = (), f"cgroups: {exc}"
            refusal = refusal or filter_refusal
        isolated = policy is not None and not refusal
        if isolated:
            try:
                isolation.new_pid_namespace()
            except isolation.Refused as exc:
                isolated, refusal = False, str(exc)
        pid = os.fork()
        if pid == 0:
            _sandbox_main(shell, policy, built, request["path_env"], fds, sock.fileno(), refusal)
        if isolated:
            try:
                isolation.restore_pid_namespace(own_pid_namespace)
            except isolation.Refused:
                intact = False  # no later sandbox could have a namespace: the worker retires
        for fd in fds:
            os.close(fd)
        sock.send(protocol.encode(pid))
        _, status, usage = os.wait4(pid, 0)
        peak, kills = cgroups.memory_figures(folders, kills_before) if folders else (0, 0)
        sock.send(protocol.encode({"status": status, "maxrss_kb": usage.ru_maxrss,
                                   "memory_peak": peak, "oom_kills": kills,
                                   "cpu_seconds": usage.ru_utime + usage.ru_stime}))
        # the worker goes on with its results meanwhile; the next request waits for this
        if folders:
            isolation.kill_cgroup(folders, keep=os.getpid())
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
        if private_anonymous and end > start:
            try:
                linux.madvise(start, end - start, linux.MADV_COLLAPSE)
            except OSError:
                pass  # not collapsible (too sparse, or a kernel without MADV_COLLAPSE)


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
                  path_env: str, fds: list[int], zygote_fd: int, refusal: str) -> None:
    """The forked kernel: isolate, then serve the grader's requests."""
    request_fd, reply_fd, output_fd, workdir_fd = fds
    try:
        os.close(zygote_fd)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        isolation.close_other_fds({0, 1, 2, request_fd, reply_fd, workdir_fd})
        sys.stdout = sys.__stdout__ = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        if policy is None:
            os.setsid()
            os.fchdir(workdir_fd)
            os.close(workdir_fd)
        else:
            isolation.enter_namespaces(refusal)
            isolation.confine(policy, workdir_fd, path_env, syscalls)
        protocol.send(reply_fd, ["ready"])
    except BaseException as exc:  # noqa: BLE001 - fail closed: say why, run nothing
        reason = str(exc) if isinstance(exc, isolation.Refused) else f"{type(exc).__name__}: {exc}"
        try:
            protocol.send(reply_fd, ["refused", reason])
        finally:
            os._exit(isolation.EXIT_REFUSED)
    try:
        serve(shell, request_fd, reply_fd)
    finally:
        os._exit(0)


class Zygote:
    """The worker's side of its zygote."""

    def __init__(self) -> None:
        self.pid, self.sock = start_zygote()
        self.syscalls_sent: tuple[RefusedCalls, ...] | None = None

    def spawn(self, policy: Policy | None, workdir: str, path_env: str, limits: Limits,
              deadline: float) -> Sandbox:
        """Fork a sandbox working on a copy of ``workdir`` (``SandboxGone`` if it never starts:
        its reason says which isolation step was refused)."""
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        output_r, output_w = os.pipe()
        workdir_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        request: dict[str, Any] = {"path_env": path_env, "policy": policy_to_plain(
            None if policy is None else dataclasses.replace(policy, syscalls=()))}
        if policy is not None and policy.syscalls != self.syscalls_sent:
            # the table is the same for a whole run: it crosses once, not with every sandbox
            request["syscalls"] = [dataclasses.asdict(rule) for rule in policy.syscalls]
            self.syscalls_sent = policy.syscalls
        message = protocol.encode(request)
        child_fds = [request_r, reply_w, output_w, workdir_fd]
        socket.send_fds(self.sock, [message], child_fds)
        for fd in child_fds:
            os.close(fd)
        pid = protocol.decode(self.sock.recv(CONTROL_BYTES))
        sandbox = Sandbox(self, pid, request_w, reply_r, output_r, limits)
        try:
            ready = sandbox.exchange(None, deadline)
        except SandboxGone:
            sandbox.close()  # collects the exit report, keeping the zygote socket in step
            raise
        if ready != ["ready"]:
            sandbox.close()
            why = ready[1] if isinstance(ready, list) and len(ready) == 2 else "no reason given"
            raise SandboxGone(f"the sandbox could not be set up ({why})")
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

    def exchange(self, request: Any, deadline: float) -> Any:
        """Send ``request`` (unless None) and return the decoded reply, draining output meanwhile.

        Decoding counts against ``deadline`` too. Raises ``SandboxGone`` (the sandbox exited,
        timed out, wrote too much, or sent something that is not a bounded plain-data reply).
        """
        pending = memoryview(b"" if request is None else protocol.frame(protocol.encode(request)))
        reader = protocol.FrameReader(self.limits.reply_bytes)
        output_open = True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise SandboxGone("timeout")
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
                    raise SandboxGone("exited")
                try:
                    payload = reader.feed(chunk)
                    if payload is None:
                        continue
                    self._drain_output()
                    return protocol.decode(payload, max_items=self.limits.reply_items,
                                           deadline=deadline)
                except TimeoutError:
                    self.kill()
                    raise SandboxGone("timeout") from None
                except protocol.ProtocolError as exc:
                    self.kill()
                    raise SandboxGone(f"the sandbox sent a reply the grader refuses ({exc})"
                                      ) from None

    def _drain_output(self) -> bool:
        """Read what output is available; False at end of file. Enforces the output limit."""
        while _ready([self.output_fd], 0):
            chunk = os.read(self.output_fd, 1 << 16)
            if not chunk:
                return False
            self.output_total += len(chunk)
            room = max(0, OUTPUT_KEPT - len(self.output))
            self.output += chunk[:room]
            if self.output_total > self.limits.output_bytes:
                self.kill()
                raise SandboxGone("output limit")
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


def describe_exit(exit: Exit, limits: Limits) -> tuple[str, str]:
    """Why a sandbox ended: a kind (``memory``, ``cpu_time``, ``file_size``, ``sandbox`` or
    ``exited``) and a human reason naming the limit."""
    if exit.zygote_lost:
        return "sandbox", (f"the sandbox's job slot was killed, most likely by its memory limit "
                           f"({limits.memory_bytes / 1024**3:g} GB)")
    if exit.oom_kills:
        return "memory", f"memory limit {limits.memory_bytes / 1024**3:g} GB exceeded"
    cpu = f"CPU time limit {limits.cpu_seconds} s exceeded"
    if exit.cpu_seconds >= limits.cpu_seconds:  # PID 1 ignores SIGXCPU: SIGKILL at the hard limit
        return "cpu_time", cpu
    status = exit.status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return "cpu_time", cpu
        if sig == signal.SIGXFSZ:
            return "file_size", f"file size limit {limits.file_bytes // 1024**2} MB exceeded"
        try:
            return "exited", f"the kernel was killed ({signal.Signals(sig).name})"
        except ValueError:
            return "exited", f"the kernel was killed (signal {sig})"
    code = os.WEXITSTATUS(status)
    if code == isolation.EXIT_REFUSED:
        return "sandbox", "the sandbox could not be set up"
    return "exited", f"the kernel exited with code {code}"
