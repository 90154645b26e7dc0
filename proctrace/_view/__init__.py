"""The viewer: trace files read into trees, shown as text or as an HTML page."""
