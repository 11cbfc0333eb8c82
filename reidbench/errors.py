"""User-facing errors: raised for mistakes the user can fix, shown without a traceback by the CLI."""


class UserError(Exception):
    """A problem with the user's input (names, paths, config keys, data layout).

    The message must say what was wrong, what was expected and what to do.
    """
