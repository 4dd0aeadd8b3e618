"""User-facing errors: one line that says what is wrong and where, exit code 2."""

from __future__ import annotations

USER_ERROR_EXIT_CODE = 2


class UserInputError(Exception):
    """Bad input from the user (a file, a flag, a value); printed as one line, never a traceback.

    `where` names the file and, when known, the field, row or flag (``scenario.yaml: services[0].cpu``);
    `what` says what is wrong with it.
    """

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what
