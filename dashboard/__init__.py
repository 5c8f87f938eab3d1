"""A live view of the pipeline, read from Kafka alone: ``python -m dashboard``."""
