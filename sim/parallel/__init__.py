"""Parallelism layer: data / tensor / pipeline parallel plans, pipeline
schedules (GPipe, 1F1B, interleaved 1F1B), their expansion into an operator
trace with the communication each technique implies, the memory model and
the training metrics."""
