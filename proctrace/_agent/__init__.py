"""The agent: collects a run's records, decides how each process ended, and exports."""
