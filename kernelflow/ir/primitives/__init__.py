"""Every primitive of the IR, one family per module. Importing this package registers them all."""
from . import elementwise, movement, reduction, indexing, sources, contraction, window  # noqa: F401
