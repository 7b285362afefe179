from __future__ import annotations

import sys
from pathlib import Path

# Test nodes are named by `_target_`, so their module must be importable by name.
sys.path.insert(0, str(Path(__file__).parent))
