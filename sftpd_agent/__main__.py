"""``python -m sftpd_agent``: the same as the ``sftpd-agent`` command."""

import sys

from .cli import main

sys.exit(main())
