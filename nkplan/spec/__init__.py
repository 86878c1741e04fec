"""The YAML spec: pydantic models (models.py) and cross-field checks (checks.py)."""

from nkplan.spec.models import LinkSpec, NamespaceSpec, PeerSpec, RouteSpec, StackSpec

__all__ = ["LinkSpec", "NamespaceSpec", "PeerSpec", "RouteSpec", "StackSpec"]
