import sys

from zdtp_worker.cli import main

sys.exit(main())
