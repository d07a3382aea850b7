"""The ``buyerjourney`` command's subcommands beyond the core ones in :mod:`buyerjourney.cli`."""
