"""``python -m provisioner.cli``: the ``kubelab`` command."""

import sys

from provisioner.cli.main import main

sys.exit(main())
