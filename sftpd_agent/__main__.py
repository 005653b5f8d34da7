"""``python -m sftpd_agent``: the same as the ``sftpd-agent`` command."""

import sys

from .commands import main

sys.exit(main())
