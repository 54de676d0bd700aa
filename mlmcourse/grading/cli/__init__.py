"""The grading sub-commands of ``mlmcourse``: argument parsing and exit codes only.

nbgrader imports nbformat, which imports jsonschema, which compiles 38 grammars at import (about
a second) when ``rfc3987-syntax`` is installed, only to check the ``iri`` format of JSON
schemas. No grading command validates that format, so these commands import jsonschema
without it.
"""

import sys

sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment] # import -> ImportError
