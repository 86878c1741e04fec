"""nkplan: declarative netkit/veth networking for Linux, planned and applied."""

__version__ = "0.1.0"
