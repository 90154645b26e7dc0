"""The OpenTelemetry SDK: the one adapter for its private members, and span conversion."""
