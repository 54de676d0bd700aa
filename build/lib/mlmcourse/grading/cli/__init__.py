"""The grading sub-commands of ``mlmcourse``: argument parsing and exit codes only."""
