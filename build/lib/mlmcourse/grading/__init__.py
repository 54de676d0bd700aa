"""Exercises and grading: release, check and grade the course's nbgrader assignments."""
