"""The child side: what runs inside a traced process or pool task.

Its connection to the collector, its spans, its logs, and the run of a
traced target. It imports only the core, and no OpenTelemetry SDK.
"""
