"""Reliability suite (issue 6): faults, kill -9, hostile input, properties, secrets.

``make test`` runs the quick version of everything here; ``make soak`` runs the long one.
"""
