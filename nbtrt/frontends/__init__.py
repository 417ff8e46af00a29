"""Model importers. Each turns its format into an :class:`nbtrt.ir.Graph`; only ``onnx.py`` imports onnx."""
