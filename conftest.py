# Makes the repository root importable for the tests without installing (pytest rootdir conftest).
