"""One exception type for bad user input, so stages can print it cleanly and exit non-zero."""

from __future__ import annotations


class DajError(Exception):
    """A problem with user input (params, data files) that the user must fix.

    The message names the file, the line and the field where they are known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field = path, line, field
        where = []
        if path is not None:
            where.append(str(path) + (f":{line}" if line is not None else ""))
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
