"""The benchmark: ``python -m bench``. Not part of the test suite."""
