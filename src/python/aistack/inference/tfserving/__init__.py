"""Engines that run the model in TensorFlow Serving: REST (:mod:`.rest`), gRPC (:mod:`.grpc`).

Both send each image as a lossless PNG to the SavedModel's ``image_bytes`` signatures and
map TF Serving's failures to :mod:`aistack.errors`, so a router can treat them alike. Only
the gRPC engine imports TensorFlow (through TF Serving's protos), and only when built.
"""
