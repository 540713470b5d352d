"""The one exception type the CLI turns into a one-line message."""


class NeurozooError(Exception):
    """A problem with the user's input or environment, stated in one line.

    The CLI prints the message without a traceback and exits with status 2.
    Messages name the file, field or id at fault and what was expected.
    """
