"""Small modules shared by the producer and the three consumers."""
