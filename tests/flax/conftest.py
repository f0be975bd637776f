"""tests/flax: the shared models module (_models.py) sits beside the tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
