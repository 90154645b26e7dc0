"""OTLP: values, protobuf and JSON encodings, trace files, and the one transport."""
