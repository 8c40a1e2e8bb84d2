"""kubectl-rolecall: the role verbs (clear, compact, stop, start, purge, ...) as a kubectl plugin.

It only writes what a person could write with kubectl (annotations, spec fields, a DatabaseMaintenance),
then follows the resource's status until the operator acknowledges the request. The API models in
rolecall.api are its only knowledge of the kinds; cluster.py is its only door to the Kubernetes API.
"""
