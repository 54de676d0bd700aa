"""The sandbox's system-call filter: :data:`~mlmcourse.grading.sandbox.policy.REFUSED_SYSCALLS`
installed with libseccomp (through ``pyseccomp``).

The zygote builds the filter once per table (:func:`build`, before it forks) and each sandbox
loads it (:func:`load`) as the last step of its isolation, after ``no_new_privs`` and the change
of uid, before any student code. Every rule of the table is installed or the sandbox is refused
(:class:`FilterError`, which isolation turns into ``Refused``): libseccomp missing, a system call
the library does not know on this architecture, an argument test it cannot express, or a kernel
without seccomp.

Beyond the table: a system call of any ABI but the native one kills the process
(``ACT_BADARCH``; on x86-64 that is ``int 0x80`` and x32), and a number below
:data:`~mlmcourse.grading.sandbox.policy.SYSCALL_NUMBERS` that the library's table does not name
fails with ``ENOSYS`` (a kernel interface newer than the table is refused, not open).
"""

from __future__ import annotations

from errno import ENOSYS
from types import ModuleType
from typing import TYPE_CHECKING

from mlmcourse.grading.sandbox.policy import SYSCALL_NUMBERS, ArgumentTest, RefusedCalls

if TYPE_CHECKING:
    import pyseccomp


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
        for name in refused.syscalls:
            number = syscall_number(name)
            for test in refused.when or (None,):
                try:
                    built.add_rule(library.ERRNO(refused.errno), number,
                                   *([] if test is None else [_argument(library, test)]))
                except (OSError, AttributeError) as exc:
                    raise FilterError(f"{refused.family}: {name} {test or ''}: {exc}") from None
    for number in unnamed_numbers():
        try:
            built.add_rule(library.ERRNO(ENOSYS), number)
        except OSError as exc:
            raise FilterError(f"system call number {number}: {exc}") from None
    return built


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
    """The native system call numbers below ``SYSCALL_NUMBERS`` the library does not name."""
    library = _library()
    unnamed = []
    for number in range(SYSCALL_NUMBERS):
        try:
            library.resolve_syscall(library.Arch.NATIVE, number)
        except ValueError:
            unnamed.append(number)
    return unnamed


def _library() -> ModuleType:
    """``pyseccomp``, imported when first needed: without libseccomp, sandboxes are refused
    with this reason, while the rest of the grader (``--no-sandbox``) still imports."""
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as exc:
        raise FilterError(f"libseccomp is not available ({exc}): install libseccomp2 "
                          "(Debian, Ubuntu) or libseccomp (Fedora) and pyseccomp") from None
    return pyseccomp


def _argument(library: ModuleType, test: ArgumentTest) -> pyseccomp.Arg:
    operator = getattr(library, test.op.upper())
    if test.op == "masked_eq":
        return library.Arg(test.index, operator, test.mask, test.value)
    return library.Arg(test.index, operator, test.value)
