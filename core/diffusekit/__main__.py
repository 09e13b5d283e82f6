"""``python -m diffusekit`` (e.g. ``torchrun --nproc-per-node 4 -m diffusekit sample ...``)."""

import sys

from .cli import main

sys.exit(main())
