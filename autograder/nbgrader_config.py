"""nbgrader configuration of the mlmcourse exercises: everything stays inside ``autograder/``.

Paths are computed from this file's location, so the course works from any working directory
(``mlmcourse release`` loads this file explicitly; ``nbgrader`` finds it when run from here).
"""

import os

c = get_config()  # noqa: F821  (injected by traitlets when the file is loaded)

HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "mlmcourse"
c.CourseDirectory.root = HERE
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "gradebook.db")
c.Exchange.root = os.path.join(HERE, "exchange")
c.Exchange.path_includes_course = True

# A released code cell runs and returns None until the student writes the answer: the tests then
# fail with a readable message instead of NotImplementedError.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\n..."}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

c.Execute.timeout = 120
