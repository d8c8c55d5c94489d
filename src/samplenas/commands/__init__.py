"""Sub-commands of the ``samplenas`` CLI, one module each."""
