"""LayerScope: `python main.py [PATH [PATH2]]` opens the window; `python main.py inspect ...` the CLI."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
