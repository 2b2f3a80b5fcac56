"""Test doubles of external services, speaking their documented protocols.

``tfserving_rest`` and ``tfserving_grpc`` are doubles of TensorFlow Serving (REST and gRPC)
that serve the real SavedModel through its signatures: only the server is stood in for,
never the model. They also run by hand, e.g.
``python -m tests.doubles.tfserving_rest --model-dir models/covid19 --port 8501``.
"""
