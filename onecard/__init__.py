"""onecard: real AI projects on one consumer GPU.

`import onecard` stays light: heavy libraries are imported inside the functions that use them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
