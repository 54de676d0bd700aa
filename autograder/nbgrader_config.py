"""nbgrader configuration of this course folder: everything of it but the exchange stays inside.

Paths are computed from this file's location, so the course works from any working directory:
``mlmcourse`` commands find it as the nearest folder upward holding this file, and ``nbgrader``
and ``jupyter server`` read it when started from here.
"""

import os

c = get_config()  # noqa: F821  (injected by traitlets when the file is loaded)

HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "mlmcourse"
c.CourseDirectory.root = HERE
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "gradebook.db")
# The exchange, where students fetch and submit, is not set here: the hub's global nbgrader
# configuration sets it (c.Exchange.root), else it is nbgrader's /srv/nbgrader/exchange.
# `mlmcourse init --exchange DIR` sets it at the end of this file instead.
c.Exchange.path_includes_course = True

# A released code cell runs and returns None until the student writes the answer.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\n..."}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

c.Execute.timeout = 120

# Late submissions: the due date of an assignment is set with
#   nbgrader db assignment add ASSIGNMENT --duedate="2026-12-01 17:00:00 UTC"
# (or in formgrader's "Manage Assignments"); 'zero' gives a late submission no points.
c.LateSubmissionPlugin.penalty_method = "none"
