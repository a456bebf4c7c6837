"""One exception type for bad user input, so stages can print it cleanly and exit non-zero."""

from __future__ import annotations


class DajError(Exception):
    """A problem with user input (params, data files) that the user must fix.

    `message` says what is wrong; `path`, `line` and `field` say where, when they are known. The
    text of the exception names the file, the line and the field before the message.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.message, self.path, self.line, self.field = message, path, line, field
        super().__init__(self._text())

    def _text(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path) + (f":{self.line}" if self.line is not None else ""))
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def at(self, *, path: str | None = None, line: int | None = None, field: str | None = None,
           under: str | None = None) -> DajError:
        """The same problem located: `path`/`line`/`field` fill what is unknown, `under` prefixes the
        field with a dotted key (an engine option `batch_size` under `judge.engine_options`)."""
        name = self.field
        if under is not None:
            name = f"{under}.{name}" if name else under
        elif field is not None and name is None:
            name = field
        return DajError(self.message, path=self.path if self.path is not None else path,
                        line=self.line if self.line is not None else line, field=name)
