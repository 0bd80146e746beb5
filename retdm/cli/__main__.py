"""``python -m retdm.cli`` (e.g. under ``torchrun``) is the ``retdm`` command."""

from retdm.cli import main

main()
