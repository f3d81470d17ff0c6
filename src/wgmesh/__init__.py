"""wgmesh: WireGuard key exchange for Freifunk meshes (broker and gateway worker)."""

__version__ = "0.1.0"
