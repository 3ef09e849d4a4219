#!/usr/bin/env python
"""Django's command-line utility for KMI (the same as the ``kmi`` command of an installed KMI)."""

from web.cli import main

if __name__ == "__main__":
    main()
