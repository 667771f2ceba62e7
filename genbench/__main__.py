import sys

from genbench.cli import main

sys.exit(main())
