"""The toolkit's shared machinery, below the network (``backbone``) and the detector (``detector``):
typed configs, atomic outputs and checkpoints, the training skeleton, the device and processes,
logs, image decoding, the errors a user can fix and the tools' exit codes, and the generated
miniature data. Nothing here imports ``backbone`` or ``detector``."""
