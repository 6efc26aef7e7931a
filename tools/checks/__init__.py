"""The stages of ``tools/selfcheck.py``: each runs one real code path on the device under test and
compares it with the same computation in fp32 on the CPU."""
