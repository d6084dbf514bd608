"""``python -m edge_dred.evaluate --speech DIR --traces DIR -o DIR``."""
import sys

from .cli import main

sys.exit(main())
