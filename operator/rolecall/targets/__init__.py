"""Resolve a role resource to its target Pods (selector, nodes) and to its workload (scale subresource)."""
