import sys

from presence_svc.cli import main

sys.exit(main())
