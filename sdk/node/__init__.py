"""accord.node: the embeddable validator (:class:`Node`) and its client API."""

from .collector import tune_collector
from .node import Node, Subscription

__all__ = ["Node", "Subscription", "tune_collector"]
