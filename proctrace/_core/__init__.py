"""The core: settings, the decorator's spec, ids, names and the record protocol.

Plain data and pure functions that every other layer shares; it imports
nothing else of proctrace.
"""

# proctrace's version, here so that encoders can name it without importing the package.
VERSION = "0.1.0"
