"""What the engine reads and writes: files are written atomically, and files are read
without running code and size-checked before anything is allocated.

    fileio.py         atomic writes, folder checks, a checked ``.npz`` reader
    checkpoint.py     training checkpoints: arrays plus checked metadata
    serialization.py  ``tinyvgg.save`` / ``tinyvgg.load`` of state dicts
    plotting.py       matplotlib figures saved as PNG files
    texttable.py      plain-text tables for the terminal
"""
