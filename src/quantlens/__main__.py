import sys

from quantlens.cli import main

sys.exit(main())
