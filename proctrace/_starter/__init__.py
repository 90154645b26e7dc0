"""The starter side: the run's lifetime, and the carrier captured where a process starts."""
