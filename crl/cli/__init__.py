"""The ``crl`` command line: ``main.py`` parses arguments and runs the commands, ``resume.py`` continues a run
(``crl train --resume``), ``usage.py`` is the error for bad input (one line, exit status 2)."""
