"""``python -m compactcortex.cli``: the ``compactcortex`` command."""
import sys

from . import main

sys.exit(main())
