"""The sandbox's system-call filter: :data:`~mlmcourse.grading.sandbox.policy.REFUSED_SYSCALLS`
installed with libseccomp (through ``pyseccomp``).

The zygote builds the filter once per table (:func:`build`, before it forks) and each sandbox
loads it (:func:`load`) as the last step of its isolation, after ``no_new_privs`` and the change
of uid, before any student code. Every rule of the table is installed or the sandbox is refused
(:class:`FilterError`, which isolation turns into ``Refused``): libseccomp missing, a system call
the library does not know on this architecture, a condition it cannot express, or a kernel
without seccomp.

Beyond the table: a system call of any ABI but the native one kills the process
(``ACT_BADARCH``; on x86-64 that is ``int 0x80`` and x32), and a number newer than the
library's table (below :data:`~mlmcourse.grading.sandbox.policy.SYSCALL_NUMBERS`) fails with
``ENOSYS``: a kernel interface added after the table was written is refused, not open.
"""

from __future__ import annotations

from errno import ENOSYS
from types import ModuleType

from mlmcourse.grading.sandbox.policy import SYSCALL_NUMBERS, RefusedCalls

MISSING = ""
"""Why the library cannot be used, when it cannot."""
try:  # here, in the worker: the zygote it forks, and each sandbox, find the library loaded
    import pyseccomp
except (ImportError, RuntimeError) as exc:  # RuntimeError: pyseccomp without libseccomp
    pyseccomp = None
    MISSING = str(exc)


class FilterError(Exception):
    """A rule of the table cannot be installed; ``str()`` names it."""


def build(table: tuple[RefusedCalls, ...]) -> pyseccomp.SyscallFilter:
    """The filter of ``table`` for the native ABI, built but not loaded."""
    library = _library()
    try:
        built = library.SyscallFilter(library.ALLOW)
        built.set_attr(library.Attr.ACT_BADARCH, library.KILL_PROCESS)
    except OSError as exc:
        raise FilterError(f"libseccomp: {exc.strerror or exc}") from None
    for refused in table:
        tests = argument_tests(refused)
        for name in refused.syscalls:
            number = syscall_number(name)
            for test in tests or [()]:
                try:
                    built.add_rule(library.ERRNO(refused.errno), number,
                                   *[library.Arg(refused.argument, getattr(library, str(op)), *data)
                                     for op, *data in test])
                except OSError as exc:
                    raise FilterError(f"{refused.family}: {name}: {exc}") from None
    for number in unnamed_numbers():
        try:
            built.add_rule(library.ERRNO(ENOSYS), number)
        except OSError as exc:
            raise FilterError(f"system call number {number}: {exc}") from None
    return built


def argument_tests(refused: RefusedCalls) -> list[tuple[tuple[int | str, ...], ...]]:
    """``refused``'s condition as libseccomp rules: a call is refused when one rule's tests
    hold; each test is ``(operator, data...)`` on ``refused.argument``. No rules: always.

    libseccomp compares an argument once per rule, so ``any_bits`` becomes one rule per bit and
    ``unless_one_of`` one per block of the values in between (aligned blocks of a power of two
    in size, each one masked comparison; below the least value and above the greatest, one
    comparison each).
    """
    if refused.any_bits and refused.unless_one_of:
        raise FilterError(f"{refused.family}: both any_bits and unless_one_of")
    if not 0 <= refused.any_bits < 1 << 64 or not all(
            0 <= value < 1 << 64 for value in refused.unless_one_of):
        raise FilterError(f"{refused.family}: an argument value that is not 64 bits")
    if refused.any_bits:
        bits = [1 << bit for bit in range(64) if refused.any_bits >> bit & 1]
        return [(("MASKED_EQ", bit, bit),) for bit in bits]
    if not refused.unless_one_of:
        return []
    values = sorted(set(refused.unless_one_of))
    rules: list[tuple[tuple[int | str, ...], ...]] = []
    if values[0] > 0:
        rules.append((("LT", values[0]),))
    for low, high in zip(values, values[1:], strict=False):
        start, end = low + 1, high - 1
        while start <= end:
            size = 1
            while start % (2 * size) == 0 and start + 2 * size - 1 <= end:
                size *= 2
            rules.append((("MASKED_EQ", ((1 << 64) - 1) & ~(size - 1), start),))
            start += size
    if values[-1] < (1 << 64) - 1:
        rules.append((("GT", values[-1]),))
    return rules


def load(built: pyseccomp.SyscallFilter) -> None:
    """Load ``built`` into the calling process (its threads and children inherit it)."""
    try:
        built.load()
    except OSError as exc:
        raise FilterError(f"loading the filter: {exc.strerror or exc}") from None


def syscall_number(name: str) -> int:
    """The native number of the system call ``name`` (``FilterError`` if it has none here)."""
    library = _library()
    number = library.resolve_syscall(library.Arch.NATIVE, name)
    if number < 0:  # unknown to the library, or not a system call of this architecture
        raise FilterError(f"no system call {name!r} on this architecture")
    return number


def unnamed_numbers() -> list[int]:
    """The native system call numbers newer than the library's table: above the greatest it
    names, below ``SYSCALL_NUMBERS``."""
    library = _library()
    newest = 0
    for number in range(SYSCALL_NUMBERS):
        try:
            library.resolve_syscall(library.Arch.NATIVE, number)
            newest = number
        except ValueError:
            pass
    return list(range(newest + 1, SYSCALL_NUMBERS))


def _library() -> ModuleType:
    """``pyseccomp``; without libseccomp, sandboxes are refused with this reason, while the
    rest of the grader (``--no-sandbox``) still imports."""
    if pyseccomp is None:
        raise FilterError(f"libseccomp is not available ({MISSING}): install libseccomp2 "
                          "(Debian, Ubuntu) or libseccomp (Fedora) and pyseccomp")
    return pyseccomp
