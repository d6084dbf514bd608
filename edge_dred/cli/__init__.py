"""The ``edge-dred`` command line: ``main`` builds the parser; each command group lives in its own module."""
