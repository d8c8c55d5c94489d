"""The one exception type for mistakes a user can fix (the CLI turns it into exit status 2)."""


class UserError(ValueError):
    """Bad user input: the message is one sentence naming the problem and the fix."""
