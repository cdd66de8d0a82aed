import sys

from regen_sync.cli import main

sys.exit(main())
