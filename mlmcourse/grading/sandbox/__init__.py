"""The security boundary of the grader: everything that runs student code lives here.

- :mod:`.policy`: what a student's code can see and do (the one file to read);
- :mod:`.isolation`: how a forked child applies the policy (fails closed);
- :mod:`.seccomp`: the system-call filter, built from the policy's table;
- :mod:`.cgroups`, :mod:`.linux`: the kernel interfaces it uses;
- :mod:`.zygote`: forking sandboxes from a warm process, and the grader's handle on one;
- :mod:`.kernel`: the tiny kernel that runs cells inside a sandbox;
- :mod:`.protocol`: the plain-data wire format between the two sides.
"""
