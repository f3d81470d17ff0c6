"""What tests, bench/ and the Molecule helpers share: processes, ports, namespaces, keys.

Importable as ``tests.support`` from the repository root: pytest puts the root on
sys.path (pytest.ini ``pythonpath``); a script run as ``python bench/x.py`` or by
Molecule inserts it first (see bench/README.md). Standard library only, so the
helpers also run under ansible's Python in Molecule.
"""
