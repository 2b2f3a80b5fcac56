"""Inference engines behind one interface: in-process SavedModel now, TF Serving later."""
