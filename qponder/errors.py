"""User-facing errors.

Anything the user can fix (a bad file, a wrong name, a missing package) is raised as `QPonderError`
with a message that names the file/row/field. The CLI prints it on one line and exits 2; it never
shows a traceback for these.
"""


class QPonderError(Exception):
    """An error caused by the user's input or environment, with a message that says how to fix it."""
