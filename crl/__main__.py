"""``python -m crl ...`` is the ``crl`` command."""

import sys


def run() -> int:
    """The ``crl`` command. A Ctrl-C while its modules load (torch: seconds) is one line and status 130, as later."""
    from crl.run.console import StartupInterrupt

    startup = StartupInterrupt().install()
    try:
        from crl.cli.main import main
    except KeyboardInterrupt:
        startup.received = True
    if startup.received:
        print("crl: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
