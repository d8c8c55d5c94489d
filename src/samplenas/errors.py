"""The exception types for mistakes a user can fix (the CLI turns them into exit status 2).

``UserError`` subclasses ``Exception``, not ``ValueError``: numeric code raises
``ValueError`` for internal faults, and a broad ``except ValueError`` must neither swallow
a user's mistake nor turn an internal fault into one.
"""


class UserError(Exception):
    """Bad user input: the message is one sentence naming the problem and the fix."""


class MissingExtra(UserError):
    """A feature needs an optional dependency group (``pip install samplenas[EXTRA]``)."""

    def __init__(self, what: str, extra: str) -> None:
        self.install = f"pip install samplenas[{extra}]"
        super().__init__(f"{what} needs an optional package: {self.install}")
