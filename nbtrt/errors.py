"""The one exception family of nbtrt.

Every error a user can provoke (a bad file, a broken graph, an unsupported op, a wrong input at run
time) is a subclass of :class:`NbtrtError` and names the file, node or input it is about.
"""


class NbtrtError(Exception):
    """Base of every error nbtrt raises on bad input."""


class ModelLoadError(NbtrtError):
    """The model file or bytes could not be read as a model (truncated, not ONNX, missing data file)."""


class GraphError(NbtrtError):
    """The graph is malformed: undefined value, missing initializer, cycle, broken SSA."""


class ShapeError(NbtrtError):
    """A shape or dtype contradicts what an op requires."""


class AttributeValueError(NbtrtError):
    """An attribute of a node is missing, of the wrong kind or out of range."""


class UnsupportedOpError(NbtrtError):
    """One or more ops have no implementation; ``unsupported`` lists (node, op) pairs."""

    def __init__(self, unsupported):
        self.unsupported = list(unsupported)
        lines = [f"  {name!r}: {op}" for name, op in self.unsupported]
        super().__init__(f"{len(self.unsupported)} unsupported node(s):\n" + "\n".join(lines))


class InputError(NbtrtError):
    """Inputs given at run time do not match the model (unknown/missing name, shape, dtype)."""


class ExecutionError(NbtrtError):
    """A node failed while running (reference interpreter or engine)."""


def node_error(cls, node, message):
    """Build ``cls`` with a message that names ``node`` (an ir.Node) and its op."""
    return cls(f"node {node.name!r} ({node.op}): {message}")


class EngineFileError(NbtrtError):
    """An engine file could not be read: truncated, not an engine, damaged (checksum), malformed."""


class EngineVersionError(EngineFileError):
    """The engine file was written in a newer format than this nbtrt reads."""


class ArchMismatchError(EngineFileError):
    """The engine's kernels were compiled for another GPU arch (raised by ``load(..., strict=True)``)."""


class CalibrationError(NbtrtError):
    """INT8 calibration could not run: no or empty calibration data, an unknown calibrator."""


class CalibrationDataError(CalibrationError, InputError):
    """A calibration batch does not match the model's inputs (name, shape or dtype)."""


class CalibrationCacheError(CalibrationError):
    """A calibration cache file is unreadable: not a cache, damaged, or written in an unknown format."""


class CalibrationCacheMismatch(CalibrationCacheError):
    """A calibration cache was made for another model (or calibrator); ``missing`` / ``unknown`` name the tensors."""

    def __init__(self, message, missing=(), unknown=()):
        self.missing = list(missing)
        self.unknown = list(unknown)
        super().__init__(message)


class PluginError(NbtrtError):
    """A plugin misbehaved: a callback raised (output types, configure, initialize, enqueue,
    reference, serialize, deserialize) or returned nonsense (wrong count, negative dims, bad dtype).
    The message names the node and the plugin."""


class PluginNotFoundError(UnsupportedOpError):
    """No plugin creator is registered for an op: ``unsupported`` lists (node, "domain::op version v")."""

    def __init__(self, unsupported, heading: str | None = None):
        super().__init__(unsupported)
        if heading:
            self.args = (f"{heading}:\n" + str(self).split("\n", 1)[1],)
