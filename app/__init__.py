"""What the four scripts share: the pipeline's flags and settings, its metrics; where the order domain meets the Kafka runtime."""
