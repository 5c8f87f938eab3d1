"""Run the whole pipeline from one command: ``python -m demo`` (``make demo``)."""
