"""Bad input from the user: ``crl.cli.main`` prints it as one line on stderr and exits with status 2, no traceback."""


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""
