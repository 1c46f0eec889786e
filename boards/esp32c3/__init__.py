"""Only for the firmware type check: as packages, the boards' main.py files get distinct module names."""
