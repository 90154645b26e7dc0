"""proctrace's version, in a leaf module so encoders can name it without importing the package."""

VERSION = "0.1.0"
