"""Make the top-level modules importable from tests/ and keep torch to the CI machine's 2 cores."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
