"""``python -m mailbotcore``: the same command line as the installed ``mailbot``."""

import sys

from mailbotcore.cli import main

sys.exit(main(program="python -m mailbotcore"))
