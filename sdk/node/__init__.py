"""accord.node: the embeddable validator (:class:`Node`) and its client API."""

from .node import Node, Subscription

__all__ = ["Node", "Subscription"]
