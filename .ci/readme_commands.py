"""Print the README's quick-start commands: the lines of the first ```sh block after the
'Quick start' heading, one command a line."""

import re
import sys
from pathlib import Path

text = Path(sys.argv[1]).read_text(encoding="utf-8")
section = text.split("## Quick start", 1)[1]
block = re.search(r"```sh\n(.*?)```", section, re.S)
if block:
    for line in block.group(1).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            print(line.strip())
